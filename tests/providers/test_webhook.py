"""The webhook provider against a real HTTP server on loopback, both ways it sends: on
the dispatcher's event loop (`send_async`) and blocking (`send`, on a loop of its own).
Each answer of the gateway means the same thing either way."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from balise.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    RateLimitedError,
    UnavailableError,
)
from balise.providers.webhook import WebhookProvider
from tests.providers.conftest import send_on_a_loop
from tests.spine.loopback import Reply, Sink, free_port


def message(channel: str = "sms") -> OutgoingMessage:
    return OutgoingMessage(key=str(uuid.uuid4()), channel=channel, to="+33612345601", text="Camille a besoin d'aide",
                           language="fr", alert_id=7, alert_kind="prevention", purpose="alert")


def blocking(provider: WebhookProvider, m: OutgoingMessage):
    return provider.send(m)


WAYS = pytest.mark.parametrize("send", [send_on_a_loop, blocking], ids=["async", "blocking"])


@pytest.fixture
def sink():
    sink = Sink()
    yield sink
    sink.close()


@WAYS
def test_a_message_taken_carries_its_key_its_signature_and_the_gateway_reference(sink, send):
    provider = WebhookProvider(sink.url, 5, secret="s3cret")
    m = message(channel="voice")
    result = send(provider, m)
    (hit,) = sink.snapshot()
    assert hit.key == m.key and result.provider_ref == f"sink-{sink.port}-0"
    assert hit.body["id"] == m.key and hit.body["to"] == m.to and hit.body["text"] == m.text
    assert "/inbound/voice/" in hit.body["callback_url"]  # (a signed token of the key)
    assert hit.headers["X-Balise-Signature"] == hmac.new(b"s3cret", hit.raw, hashlib.sha256).hexdigest()
    provider.close()


@WAYS
@pytest.mark.parametrize("status, error", [
    (429, RateLimitedError), (422, PermanentError), (404, PermanentError),
    (503, UnavailableError), (500, UnavailableError),
])
def test_each_refusal_is_the_typed_error_that_tells_the_dispatcher_what_next(sink, send, status, error):
    sink.script = lambda n, key, body: Reply(status=status)
    provider = WebhookProvider(sink.url, 5)
    with pytest.raises(error):
        send(provider, message())
    provider.close()


@WAYS
def test_a_connection_closed_without_an_answer_may_have_been_taken(sink, send):
    sink.script = lambda n, key, body: Reply(drop=True)
    provider = WebhookProvider(sink.url, 5)
    with pytest.raises(AmbiguousError):
        send(provider, message())
    assert len(sink.snapshot()) >= 1
    provider.close()


@WAYS
def test_an_answer_later_than_the_timeout_may_have_been_taken(sink, send):
    sink.script = lambda n, key, body: Reply(hold=True)  # (released when the test ends)
    provider = WebhookProvider(sink.url, 0.3)
    with pytest.raises(AmbiguousError):
        send(provider, message())
    provider.close()


@WAYS
def test_a_gateway_not_listening_did_not_take_it(send):
    provider = WebhookProvider(f"http://127.0.0.1:{free_port()}/", 2)
    with pytest.raises(UnavailableError):
        send(provider, message())
    provider.close()

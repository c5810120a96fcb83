"""Signed callbacks everywhere: an SMS reply, a call's status or a press on 1 is acted
on only when the provider signed it (Balise's HMAC over time, method, path and body, or
Twilio's request signature); anything else gets 403 and changes nothing: no
acknowledgement, the escalation goes on. And a fresh install, with no secret configured,
still acknowledges by keypad: its console provider signs its own callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlencode

import httpx
import pytest

from balise.alerts.models import Alert
from balise.dispatch.models import Delivery, EscalationTimer
from balise.providers.callbacks import inbound_secret, sign
from balise.tracking.tokens import make_call_token, read_call_token
from tests.personas import another_holder
from tests.contacts.helpers import deliveries, raise_alert, signed_post
from tests.spine.loopback import free_port, wait_until

SECRET = b"inbound-test-secret"
TWILIO_TOKEN = "twilio-test-token"


@pytest.fixture
def secrets(settings):
    settings.INBOUND_SECRET = SECRET.decode()
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN


def snapshot(alert: Alert) -> tuple:
    alert = Alert.objects.get(pk=alert.pk)
    return (alert.state, alert.epoch, alert.acknowledgements.count(), alert.events.count(),
            EscalationTimer.objects.filter(alert=alert, state=EscalationTimer.State.PENDING).count(),
            Delivery.objects.filter(alert=alert).count())


def twilio_signature(url: str, params: dict, token: str = TWILIO_TOKEN) -> str:
    """Twilio's documented scheme, written out here (not the SDK's code): base64
    HMAC-SHA1 of the URL followed by each parameter name and value, sorted by name."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class Callback:
    """One kind of callback: where it goes and what makes it act."""

    def __init__(self, name, path, data, as_json, acted):
        self.name, self.path, self.data, self.as_json, self.acted = name, path, data, as_json, acted

    def body(self, data=None) -> bytes:
        data = self.data if data is None else data
        return json.dumps(data).encode() if self.as_json else urlencode(data).encode()

    @property
    def content_type(self) -> str:
        return "application/json" if self.as_json else "application/x-www-form-urlencoded"


def callbacks(world, alert) -> list[Callback]:
    call = deliveries(alert, channel="voice").get()
    url = f"/inbound/voice/{make_call_token(call.pk)}"
    Delivery.objects.filter(alert=alert).update(state=Delivery.State.SENT)  # as the dispatcher does
    phone = world.contacts[0].phone

    def acknowledged(a):
        return a.acknowledgements.exists()

    def answered(a):
        return a.events.filter(kind="call_answered").exists()

    def unanswered(a):
        return a.events.filter(kind="call_unanswered").exists()

    return [
        Callback("sms reply (json)", "/inbound/sms", {"from": phone, "text": "OK"}, True, acknowledged),
        Callback("sms reply (form)", "/inbound/sms", {"From": phone, "Body": "oui"}, False, acknowledged),
        Callback("keypad 1 (form)", url, {"Digits": "1", "CallStatus": "in-progress"}, False, acknowledged),
        Callback("keypad 1 (json)", url, {"digits": "1"}, True, acknowledged),
        Callback("call answered", url, {"CallStatus": "completed"}, False, answered),
        Callback("call not answered", url, {"status": "no-answer"}, True, unanswered),
    ]


def refused(client, alert, cb: Callback, headers: dict, body: bytes | None = None, path: str | None = None):
    before = snapshot(alert)
    r = client.post(path or cb.path, cb.body() if body is None else body, content_type=cb.content_type, headers=headers)
    assert r.status_code == 403, (cb.name, r.status_code)
    assert r.json()["error"] in ("bad_signature", "replayed")
    assert snapshot(alert) == before, cb.name


@pytest.mark.parametrize("index", range(6))
def test_unsigned_forged_or_misdirected_callbacks_change_nothing(client, world, secrets, index):
    alert = raise_alert(world, "emergency")
    cb = callbacks(world, alert)[index]
    _, other_device, _ = another_holder(world, "b")
    other_call = make_call_token(deliveries(raise_alert(world, "alarm", device=other_device), channel="voice").first().pk)
    body = cb.body()
    now = time.time()

    refused(client, alert, cb, {})  # missing
    refused(client, alert, cb, {"X-Balise-Signature": sign("POST", cb.path, body)["X-Balise-Signature"]})  # no time
    refused(client, alert, cb, sign("POST", cb.path, body, secret=b"wrong"))  # wrong secret
    refused(client, alert, cb, sign("POST", cb.path, b'{"other": "body"}'))  # another body
    refused(client, alert, cb, sign("POST", "/inbound/voice/" + other_call, body))  # another URL
    refused(client, alert, cb, sign("GET", cb.path, body))  # another method
    refused(client, alert, cb, sign("POST", cb.path, body, now=now - 3600))  # too old: a replay
    refused(client, alert, cb, sign("POST", cb.path, body, now=now + 3600))  # from the future
    forged = dict(sign("POST", cb.path, body))
    forged["X-Balise-Signature"] = forged["X-Balise-Signature"][:-1] + ("0" if forged["X-Balise-Signature"][-1] != "0" else "1")
    refused(client, alert, cb, forged)  # one digit off
    # the same body signed for this URL, sent to another call's URL
    if cb.path != "/inbound/sms":
        refused(client, alert, cb, sign("POST", cb.path, body), path="/inbound/voice/" + other_call)
    # Twilio: missing, forged, made with another token, for another URL, over other parameters
    if not cb.as_json:
        from django.conf import settings

        url = settings.SITE_URL + cb.path
        refused(client, alert, cb, {"X-Twilio-Signature": "forged"})
        refused(client, alert, cb, {"X-Twilio-Signature": twilio_signature(url, cb.data, token="another")})
        refused(client, alert, cb, {"X-Twilio-Signature": twilio_signature(url + "x", cb.data)})
        refused(client, alert, cb, {"X-Twilio-Signature": twilio_signature(url, {**cb.data, "Extra": "1"})})

    assert snapshot(alert)[:3] == (Alert.State.OPEN, 0, 0) and not cb.acted(Alert.objects.get(pk=alert.pk))
    # and the genuine one acts
    r = client.post(cb.path, body, content_type=cb.content_type, headers=sign("POST", cb.path, body))
    assert r.status_code == 200, cb.name
    assert cb.acted(Alert.objects.get(pk=alert.pk)), cb.name


@pytest.mark.parametrize("index", range(6))
def test_a_valid_callback_played_again_is_refused(client, world, secrets, index):
    alert = raise_alert(world, "emergency")
    cb = callbacks(world, alert)[index]
    headers = sign("POST", cb.path, cb.body())
    r = client.post(cb.path, cb.body(), content_type=cb.content_type, headers=headers)
    assert r.status_code == 200 and cb.acted(Alert.objects.get(pk=alert.pk))
    refused(client, alert, cb, headers)
    if not cb.as_json:
        from django.conf import settings

        twilio = {"X-Twilio-Signature": twilio_signature(settings.SITE_URL + cb.path, {**cb.data, "CallSid": "CA1"})}
        body = cb.body({**cb.data, "CallSid": "CA1"})
        assert client.post(cb.path, body, content_type=cb.content_type, headers=twilio).status_code == 200
        refused(client, alert, cb, twilio, body=body)


def test_an_escalation_goes_on_after_a_forged_press_on_1(client, world, secrets, rig):
    alert = raise_alert(world, "emergency")
    rig.drain()
    call = deliveries(alert, channel="voice").get()
    url = f"/inbound/voice/{make_call_token(call.pk)}"
    assert client.post(url, {"Digits": "1"}).status_code == 403
    assert client.post(url, {"Digits": "1"}, headers={"X-Twilio-Signature": "x"}).status_code == 403
    assert Alert.objects.get(pk=alert.pk).state == Alert.State.OPEN
    assert rig.fire_next_timer(alert)  # the next step still goes out
    assert Delivery.objects.filter(alert=alert, channel="voice").count() == 2


def test_without_a_configured_secret_only_the_install_itself_can_sign(client, world, settings):
    settings.INBOUND_SECRET = ""
    settings.TWILIO_AUTH_TOKEN = ""
    alert = raise_alert(world, "emergency")
    cb = callbacks(world, alert)[2]  # keypad 1
    derived = inbound_secret()
    assert derived and derived != settings.SECRET_KEY.encode()
    refused(client, alert, cb, sign("POST", cb.path, cb.body(), secret=b""))
    refused(client, alert, cb, {"X-Twilio-Signature": twilio_signature(settings.SITE_URL + cb.path, cb.data, token="")})
    original, settings.SECRET_KEY = settings.SECRET_KEY, "another-install"
    other = inbound_secret()
    settings.SECRET_KEY = original
    assert other != derived
    refused(client, alert, cb, sign("POST", cb.path, cb.body(), secret=other))
    settings.INBOUND_SECRET = "configured"
    refused(client, alert, cb, sign("POST", cb.path, cb.body(), secret=derived))  # once set, it alone counts
    settings.INBOUND_SECRET = ""
    r = client.post(cb.path, cb.body(), content_type=cb.content_type, headers=sign("POST", cb.path, cb.body()))
    assert r.status_code == 200 and cb.acted(Alert.objects.get(pk=alert.pk))


def test_the_twilio_sdk_validator_accepts_twilio_json_callbacks(client, world, secrets, settings):
    """Twilio signs a JSON body through a bodySHA256 query parameter."""
    alert = raise_alert(world, "emergency")
    cb = callbacks(world, alert)[3]  # keypad 1, JSON
    body = cb.body()
    path = f"{cb.path}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = twilio_signature(settings.SITE_URL + path, {})
    refused(client, alert, cb, {"X-Twilio-Signature": sig}, body=b'{"digits": "2"}', path=path)
    r = client.post(path, body, content_type="application/json", headers={"X-Twilio-Signature": sig})
    assert r.status_code == 200 and cb.acted(Alert.objects.get(pk=alert.pk))


def test_a_fresh_demo_install_acknowledges_by_keypad(tmp_path):
    """`balise serve --demo`, console provider, no secret configured anywhere: the
    simulated call's "pressed 1" is signed by the console provider and accepted (the
    others are told someone is on it)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BALISE_SECRET_KEY", "BALISE_INBOUND_SECRET", "BALISE_TWILIO_AUTH_TOKEN",
                        "BALISE_SITE_URL")}
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env.update(PYTHONPATH=src, BALISE_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="balise.settings",
               BALISE_CONSOLE_VOICE_DEFAULT="pressed_1", BALISE_CONSOLE_VOICE_DELAY="0")
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "balise", "serve", "--demo", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        banner = wait_until(lambda: "Balise écoute sur" in (tmp_path / "serve.log").read_text()
                            and (tmp_path / "serve.log").read_text(), timeout=120, what="balise serve")
        token = next(line.split("--token ")[1].strip() for line in banner.splitlines() if " trigger double " in line)
        done = subprocess.run([sys.executable, "-m", "balise", "trigger", "double", "--server",
                               f"http://127.0.0.1:{port}", "--token", token], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        outbox = tmp_path / "console-outbox.jsonl"

        def first_contacts_link():
            rows = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
            calls = [r for r in rows if r["channel"] == "voice" and r.get("outcome") == "pressed_1"]
            texts = [r["text"] for r in rows if calls and r["channel"] == "sms" and r["to"] == calls[0]["to"]]
            return next((w for t in texts for w in t.split() if "/s/" in w), None)

        def her_answer():  # as the contact who pressed 1 sees it on her page (served at the SMS's short link)
            link = wait_until(first_contacts_link, timeout=180, what="the SMS")
            page = httpx.get(link, timeout=30, follow_redirects=True).url
            state = httpx.get(f"{str(page).rstrip('/')}/state", timeout=30).json()
            return [a for a in state["answers"] if a["mine"]]

        try:
            wait_until(her_answer, timeout=180, what="the press on 1 to be taken", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'serve.log').read_text()[-3000:]}") from None
        assert "bad_signature" not in (tmp_path / "serve.log").read_text()
        assert "refused a callback" not in (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_a_webhook_gateway_gets_the_call_url_and_must_sign_what_it_reports(client, world, secrets, transactional_db):
    from urllib.parse import urlsplit

    from balise.dispatch.dispatcher import Dispatcher
    from balise.providers.webhook import WebhookProvider
    from tests.spine.helpers import drain
    from tests.spine.loopback import Sink

    sink = Sink()
    dispatcher = Dispatcher(name="webhook-test", providers=[WebhookProvider(sink.url, 5)], workers=4)
    try:
        alert = raise_alert(world, "emergency")
        drain(dispatcher)
        call = next(h.body for h in sink.snapshot() if h.body["channel"] == "voice")
        sms = [h.body for h in sink.snapshot() if h.body["channel"] == "sms"]
        assert sms and all("callback_url" not in b for b in sms)
        path = urlsplit(call["callback_url"]).path
        assert path.startswith("/inbound/voice/")  # the token carries its time: compare what it names
        assert read_call_token(path.removeprefix("/inbound/voice/")) == call["id"]
        before = snapshot(alert)
        assert client.post(path, {"Digits": "1"}).status_code == 403
        assert snapshot(alert) == before
        assert signed_post(client, path, {"digits": "1"}, as_json=True, secret=SECRET).json() == {"result": "acknowledged"}
        assert Alert.objects.get(pk=alert.pk).state == Alert.State.ACKNOWLEDGED
    finally:
        dispatcher.close()
        sink.close()

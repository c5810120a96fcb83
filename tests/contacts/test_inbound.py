"""Inbound webhooks: SMS replies and call status / keypad, as a provider would send them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from balise.alerts.models import Alert
from balise.dispatch.models import Delivery
from balise.inbound.actions import normalize_reply
from balise.providers.callbacks import sign
from balise.tracking.tokens import make_call_token
from tests.contacts.helpers import deliveries, raise_alert, signed_post

SECRET = "inbound-test-secret"


@pytest.fixture
def signed(settings):
    settings.INBOUND_SECRET = SECRET


def sent(alert):
    """Mark the alert's deliveries as handed to the provider (as the dispatcher does)."""
    Delivery.objects.filter(alert=alert).update(state=Delivery.State.SENT)


def post_sms(client, sender, text, secret=SECRET):
    return signed_post(client, "/inbound/sms", {"from": sender, "text": text}, as_json=True, secret=secret.encode())


@pytest.mark.parametrize("text", ["OK", "ok.", " 1 ", "oui", "Oui !", "OUI"])
def test_an_sms_reply_acknowledges(client, world, signed, text):
    alert = raise_alert(world, "prevention")
    sent(alert)
    r = post_sms(client, world.contacts[1].phone, text)
    assert r.status_code == 200 and r.json() == {"result": "acknowledged"}
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    ack = alert.acknowledgements.get()
    assert ack.channel == "sms" and ack.contact_id == world.contacts[1].pk
    # "Reply OK if you go": on her way, which does not let the others stand down.
    assert ack.answer == "on_my_way"
    # the others are told
    assert deliveries(alert, purpose="notice").count() == 4


def test_sms_reply_in_national_format_and_twiml(client, world, settings):
    settings.TWILIO_AUTH_TOKEN = "twilio-token"
    alert = raise_alert(world, "prevention")
    sent(alert)
    params = {"From": "06 12 34 56 03", "Body": "oui", "To": "+33700000000"}
    url = settings.SITE_URL + "/inbound/sms"
    payload = url + "".join(k + params[k] for k in sorted(params))
    sig = base64.b64encode(hmac.new(b"twilio-token", payload.encode(), hashlib.sha1).digest()).decode()
    r = client.post("/inbound/sms", params, HTTP_X_TWILIO_SIGNATURE=sig)
    assert r.status_code == 200 and r["Content-Type"].startswith("text/xml")
    assert b"<Message>" in r.content
    assert alert.acknowledgements.get().contact_id == world.contacts[2].pk
    r = client.post("/inbound/sms", params, HTTP_X_TWILIO_SIGNATURE="forged")
    assert r.status_code == 403


def test_unsigned_or_wrongly_signed_sms_webhook_is_refused(client, world, settings):
    alert = raise_alert(world, "prevention")
    sent(alert)
    # no secret configured: only the install's own derived secret is accepted
    assert post_sms(client, world.contacts[0].phone, "OK").status_code == 403
    settings.INBOUND_SECRET = SECRET
    assert post_sms(client, world.contacts[0].phone, "OK", secret="wrong").status_code == 403
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN


def test_other_replies_do_not_acknowledge(client, world, signed):
    alert = raise_alert(world, "prevention")
    sent(alert)
    for text in ("non", "qui est-ce ?", "", "okay maybe"):
        assert post_sms(client, world.contacts[0].phone, text).json()["result"] == "unrecognised"
    assert post_sms(client, "+33699999999", "OK").json()["result"] == "no_open_alert"
    assert post_sms(client, "garbage", "OK").json()["result"] == "unknown_sender"
    r = client.post("/inbound/sms", b"{not json", content_type="application/json",
                    headers=sign("POST", "/inbound/sms", b"{not json", secret=SECRET.encode()))
    assert r.status_code == 400
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN
    assert alert.events.filter(kind="sms_reply_unrecognised").count() == 4


def test_a_reply_from_a_contact_of_two_open_alerts_is_not_guessed(client, world, other_world, signed):
    shared = world.contacts[0].phone
    other_world.contacts[0].phone = shared
    other_world.contacts[0].save()
    a, b = raise_alert(world, "prevention"), raise_alert(other_world, "prevention")
    sent(a), sent(b)
    assert post_sms(client, shared, "OK").json()["result"] == "ambiguous"
    for alert in (a, b):
        alert.refresh_from_db()
        assert alert.state == Alert.State.OPEN
        assert deliveries(alert, template="reply_unclear").count() == 1


def test_pressing_1_acknowledges_answering_does_not(client, world):
    alert = raise_alert(world, "emergency")
    call = deliveries(alert, channel="voice").get()
    url = f"/inbound/voice/{make_call_token(call.pk)}"
    r = signed_post(client, url, {"CallStatus": "completed"})  # answered, no key
    assert r.status_code == 200 and r["Content-Type"].startswith("text/xml")
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN
    assert alert.events.filter(kind="call_answered").exists()
    r = signed_post(client, url, {"Digits": "9"})  # (2 and 3 answer: see tests/providers)
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN
    r = signed_post(client, url, {"Digits": "1", "CallStatus": "in-progress"})
    assert b"<Say" in r.content
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    ack = alert.acknowledgements.get()
    assert ack.channel == "voice" and ack.contact_id == world.contacts[0].pk


def test_unanswered_calls_are_on_the_timeline(client, world):
    alert = raise_alert(world, "emergency")
    call = deliveries(alert, channel="voice").get()
    r = signed_post(client, f"/inbound/voice/{make_call_token(call.pk)}", {"status": "no-answer"}, as_json=True)
    assert r.json() == {"result": "recorded"}
    assert alert.events.filter(kind="call_unanswered").exists()


def test_bad_call_tokens_are_refused(client, world):
    alert = raise_alert(world, "emergency")
    sms = deliveries(alert, channel="sms").first()
    for token in ("nope", make_call_token(sms.pk), make_call_token("not-a-uuid")):
        assert signed_post(client, f"/inbound/voice/{token}", {"Digits": "1"}).status_code == 404
        assert client.get(f"/inbound/voice/{token}/twiml").status_code == 404
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN


def test_normalize_reply():
    assert normalize_reply(" Oui ! ") == "oui" and normalize_reply("OK.") == "ok" and normalize_reply("Ouí") == "oui"


def test_control_characters_in_replies_and_callbacks_are_dropped_not_a_500(client, world, signed):
    """A NUL byte cannot be stored (PostgreSQL refuses it in text and JSON): it and the
    other control characters are dropped, the reply is understood as it reads."""
    alert = raise_alert(world, "emergency")
    sent(alert)
    phone = world.contacts[0].phone
    r = post_sms(client, phone, "d'acc\x00ord\x1b[31m \ud800")
    assert r.status_code == 200 and r.json() == {"result": "unrecognised"}
    event = alert.events.get(kind="sms_reply_unrecognised")
    assert event.data["text"] == "d'accord[31m "
    r = signed_post(client, "/inbound/sms", {"From": phone + "\x00", "Body": "O\x00K\x07"}, secret=SECRET.encode())
    assert r.status_code == 200 and b"<Message>" in r.content
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED and alert.acknowledgements.get().contact_id == world.contacts[0].pk
    call = deliveries(alert, channel="voice").get()
    r = signed_post(client, f"/inbound/voice/{make_call_token(call.pk)}", {"status": "no-\x00answer\x00", "digits": "\x00"},
                    as_json=True, secret=SECRET.encode())
    assert r.status_code == 200 and r.json() == {"result": "recorded"}
    assert alert.events.filter(kind="call_unanswered").get().data["status"] == "no-answer"


def test_odd_bodies_get_a_4xx(client, world, signed):
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'["from", "text"]', b'{"from": {"a": 1}, "text": ["OK"]}', b"\xff\xfe"):
        r = client.post("/inbound/sms", body, content_type="application/json",
                        headers=sign("POST", "/inbound/sms", body, secret=SECRET.encode()))
        assert r.status_code == 400, body[:20]

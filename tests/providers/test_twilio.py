"""The Twilio provider, with the real `twilio` SDK talking to a stand-in for Twilio's
REST API on loopback (tests/providers/twilio_standin.py: Twilio cannot be reached from
here), and Twilio's callbacks posted to Balise signed as Twilio signs them (the SDK's
RequestValidator computes X-Twilio-Signature with the account's auth token)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from balise.alerts.models import Alert, AlertEvent
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery, EscalationTimer
from balise.providers.base import OutgoingMessage, PermanentError, UnavailableError
from balise.providers.registry import build_providers
from balise.providers.twilio import Pacer, TwilioProvider
from tests.contacts.helpers import raise_alert
from tests.personas import make_world
from tests.providers.conftest import FROM, send_on_a_loop
from tests.providers.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, INVALID_NUMBER
from tests.spine.helpers import drain
from tests.spine.loopback import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def twilio_callback(client, url: str, params: dict, token: str = AUTH_TOKEN):
    """POST PARAMS to URL as Twilio does: a form, signed with the auth token."""
    signature = RequestValidator(token).compute_signature(url, params)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": signature})


def send_alert(twilio_settings, kind: str = "emergency", contacts: int = 2):
    world = make_world(contacts=contacts)
    (provider,) = build_providers()  # BALISE_PROVIDERS=twilio, as configured
    dispatcher = Dispatcher(name="twilio-test", providers=[provider], workers=2)
    try:
        alert = raise_alert(world, kind)
        drain(dispatcher)
    finally:
        dispatcher.close()
        provider.close()
    return world, alert


@pytest.fixture
def sent(twilio_settings):
    twilio_settings.PROVIDERS = ["twilio"]
    return send_alert(twilio_settings)


def events(alert, kind):
    return [e.data for e in AlertEvent.objects.filter(alert=alert, kind=kind).order_by("id")]


def test_sms_goes_through_the_messages_api_and_receipts_reach_the_delivery(sent, standin, client):
    world, alert = sent
    sms = list(Delivery.objects.filter(alert=alert, channel="sms").order_by("recipient"))
    assert len(sms) == 2 and all(d.state == Delivery.State.SENT for d in sms)
    by_to = {m["to"]: m for m in standin.messages}
    assert set(by_to) == {d.recipient for d in sms}
    for d in sms:
        m = by_to[d.recipient]
        assert d.provider == "twilio" and d.provider_ref == m["sid"]
        assert standin.param(m, "From") == FROM and "Camille" in m["body"]
    ok, lost = sms
    for status in ("sent", "delivered"):
        url = standin.param(by_to[ok.recipient], "StatusCallback")
        assert twilio_callback(client, url, {"MessageSid": ok.provider_ref, "MessageStatus": status}).status_code == 200
    # A late "sent" after "delivered" does not move the delivery backwards.
    late = {"MessageSid": ok.provider_ref, "MessageStatus": "sent", "SmsStatus": "sent"}
    assert twilio_callback(client, standin.param(by_to[ok.recipient], "StatusCallback"), late).status_code == 200
    url = standin.param(by_to[lost.recipient], "StatusCallback")
    undelivered = {"MessageSid": lost.provider_ref, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert twilio_callback(client, url, undelivered).status_code == 200
    ok.refresh_from_db(), lost.refresh_from_db()
    assert (ok.carrier_state, ok.carrier_error) == ("delivered", "")
    assert (lost.carrier_state, lost.carrier_error) == ("undelivered", "30003")
    timeline = [(e["delivery"], e["state"], e.get("error")) for e in events(alert, "carrier_state")
                if e["channel"] == "sms"]
    assert timeline == [(str(ok.pk), "sent", None), (str(ok.pk), "delivered", None),
                        (str(lost.pk), "undelivered", "30003")]


def test_call_answered_by_a_person_plays_the_menu_and_1_means_on_my_way(sent, standin, client):
    world, alert = sent
    call = Delivery.objects.get(alert=alert, channel="voice")
    (placed,) = standin.calls
    assert placed["to"] == call.recipient and call.provider_ref == placed["sid"]
    assert standin.param(placed, "MachineDetection") == "Enable"
    assert standin.params(placed, "StatusCallbackEvent") == ["ringing", "completed"]
    twiml_url, callback = standin.param(placed, "Url"), standin.param(placed, "StatusCallback")
    assert twiml_url == f"{callback}/twiml"
    # Twilio fetches the TwiML once a person answered (synchronous answering-machine detection).
    twiml = client.post(urlsplit(twiml_url).path, {"AnsweredBy": "human", "CallStatus": "in-progress"})
    body = twiml.content.decode()
    assert body.count('<Gather numDigits="1"') == 2 and 'language="fr-FR"' in body
    assert "Appuyez sur 1" in body or "Press 1" in body
    assert twilio_callback(client, callback, {"CallSid": placed["sid"], "CallStatus": "ringing"}).status_code == 200
    assert twilio_callback(client, callback, {"CallSid": placed["sid"], "CallStatus": "in-progress",
                                              "Digits": "1"}).status_code == 200
    done = {"CallSid": placed["sid"], "CallStatus": "completed", "AnsweredBy": "human"}
    assert twilio_callback(client, callback, done).status_code == 200
    call.refresh_from_db()
    assert call.carrier_state == "answered"
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    assert alert.acknowledgements.get().answer == "on_my_way"
    assert [e["state"] for e in events(alert, "carrier_state") if e["channel"] == "voice"] == ["ringing", "answered"]
    assert len(events(alert, "call_answered")) == 1


@pytest.mark.parametrize("final,state", [
    ({"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}, "voicemail"),
    ({"CallStatus": "no-answer"}, "no_answer"),
    ({"CallStatus": "busy"}, "busy"),
])
def test_voicemail_or_no_answer_is_not_reached_and_the_plan_goes_on(sent, standin, client, final, state):
    world, alert = sent
    call = Delivery.objects.get(alert=alert, channel="voice")
    (placed,) = standin.calls
    callback = standin.param(placed, "StatusCallback")
    if state == "voicemail":  # the machine answered: Twilio asks for the TwiML, Balise hangs up
        twiml = client.post(urlsplit(standin.param(placed, "Url")).path, {"AnsweredBy": "machine_start"})
        assert "<Hangup/>" in twiml.content.decode() and "<Gather" not in twiml.content.decode()
    assert twilio_callback(client, callback, {"CallSid": placed["sid"], **final}).status_code == 200
    call.refresh_from_db()
    alert.refresh_from_db()
    assert call.carrier_state == state
    assert alert.state == Alert.State.OPEN and not alert.acknowledgements.exists()
    assert not events(alert, "call_answered")
    assert events(alert, "call_unanswered")[0]["status"] in ("voicemail", "no-answer", "busy")
    assert EscalationTimer.objects.filter(alert=alert, state=EscalationTimer.State.PENDING).exists()


def test_an_sms_reply_ok_signed_by_twilio_acknowledges(sent, standin, client):
    world, alert = sent
    phone = world.contacts[0].phone
    reply = twilio_callback(client, "http://testserver/inbound/sms",
                            {"From": phone, "To": FROM, "Body": "Ok !", "MessageSid": "SM" + "1" * 32})
    assert reply.status_code == 200 and "<Message>" in reply.content.decode()
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED


def test_a_callback_with_a_bad_signature_is_refused_and_changes_nothing(sent, standin, client):
    world, alert = sent
    (placed,) = standin.calls
    sms = standin.messages[0]
    before = (AlertEvent.objects.filter(alert=alert).count(), alert.acknowledgements.count())
    forged = [
        (standin.param(placed, "StatusCallback"), {"CallStatus": "completed", "AnsweredBy": "human", "Digits": "1"}),
        (standin.param(sms, "StatusCallback"), {"MessageStatus": "delivered"}),
        ("http://testserver/inbound/sms", {"From": world.contacts[0].phone, "Body": "OK"}),
    ]
    for url, params in forged:
        assert twilio_callback(client, url, params, token="not-the-auth-token").status_code == 403
    assert (AlertEvent.objects.filter(alert=alert).count(), alert.acknowledgements.count()) == before
    assert not Delivery.objects.filter(alert=alert).exclude(carrier_state="").exists()


def message(to: str, channel: str = "sms", key: str = "00000000-0000-0000-0000-000000000001") -> OutgoingMessage:
    return OutgoingMessage(key=key, channel=channel, to=to, text="Balise: test", language="fr", alert_id=1,
                           alert_kind="emergency", purpose="alert")


def test_errors_are_typed_an_invalid_number_is_permanent_bad_credentials_fail_over(twilio_settings, standin):
    good = TwilioProvider(ACCOUNT_SID, AUTH_TOKEN, FROM, api_url=standin.url)
    bad = TwilioProvider(ACCOUNT_SID, "wrong-token", FROM, api_url=standin.url)
    with pytest.raises(PermanentError, match="21211"):
        good.send(message(INVALID_NUMBER))
    with pytest.raises(UnavailableError, match="20003"):
        bad.send(message("+33612345601"))
    with pytest.raises(UnavailableError):
        bad.check()
    assert good.check() == "account active"
    assert not standin.messages


@pytest.mark.parametrize("send", [send_on_a_loop, TwilioProvider.send], ids=["async", "blocking"])
def test_both_ways_of_sending_read_twilio_s_answers_alike(twilio_settings, standin, send):
    good = TwilioProvider(ACCOUNT_SID, AUTH_TOKEN, FROM, api_url=standin.url)
    assert send(good, message("+33612345601")).provider_ref == standin.messages[-1]["sid"]
    with pytest.raises(PermanentError, match="21211"):
        send(good, message(INVALID_NUMBER))
    with pytest.raises(UnavailableError, match="20003"):
        send(TwilioProvider(ACCOUNT_SID, "wrong-token", FROM, api_url=standin.url), message("+33612345601"))
    standin.refuse_creates = 1
    with pytest.raises(UnavailableError, match="503"):
        send(good, message("+33612345602"))
    with pytest.raises(UnavailableError, match="unreachable"):
        send(TwilioProvider(ACCOUNT_SID, AUTH_TOKEN, FROM, api_url=f"http://127.0.0.1:{free_port()}"),
             message("+33612345603"))
    assert len(standin.messages) == 1


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_calls_are_paced_to_the_configured_rate(twilio_settings, standin):
    clock = FakeClock()
    provider = TwilioProvider(ACCOUNT_SID, AUTH_TOKEN, FROM, api_url=standin.url, pacer=Pacer(1.0, clock.clock, clock.sleep))
    for i in range(3):
        provider.send(message(f"+3361234560{i}", channel="voice", key=f"00000000-0000-0000-0000-00000000000{i}"))
    assert len(standin.calls) == 3
    assert clock.slept == [1.0, 1.0]  # the first at once, then one a second
    faster = Pacer(4.0, clock.clock, clock.sleep)
    assert [faster.wait() for _ in range(3)] == [0.0, 0.25, 0.25]

"""What a contact reads: in her language, GSM-7 for SMS, who / what / where / what to do."""

import uuid
from datetime import datetime, timezone

from balise.alerts.actions import FixIn, create_alert
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.messages import GSM7, render, to_gsm7
from balise.tracking.shortlinks import read_short_token
from tests.spine.helpers import RecordingProvider, drain


def _alert(world, kind="prevention"):
    alert, _ = create_alert(
        world.device, client_id=uuid.uuid4(), kind=kind, gesture="single",
        fixes=[FixIn(lat=45.764043, lon=4.835659, accuracy_m=12.4,
                     recorded_at=datetime(2026, 11, 24, 17, 5, tzinfo=timezone.utc), source="gps")],
    )
    return alert


def test_each_contact_reads_the_alert_in_her_language(world):
    _alert(world)
    provider = RecordingProvider()
    drain(Dispatcher(providers=[provider], workers=4))
    by_phone = {m.to: m for m in provider.sent}
    assert len(by_phone) == 5
    fr = by_phone[world.contacts[0].phone].text
    en = by_phone[world.contacts[4].phone].text
    # One SMS part: who, what, where, the short link, what to do (tests/providers/test_sms_parts.py).
    assert fr.startswith("BALISE: Camille se sent en danger")
    assert "près de Lyon" in fr or "45.7640,4.8357" in fr
    assert "17/112" in fr and "/s/" in fr
    assert en.startswith("BALISE: Camille feels in danger") and "Call 17 or 112" in en
    for message in provider.sent:
        assert set(message.text) <= GSM7, message.text


def test_the_link_is_scoped_to_the_alert_and_the_contact(world):
    alert = _alert(world)
    provider = RecordingProvider()
    drain(Dispatcher(providers=[provider], workers=4))
    for message in provider.sent:
        scope = read_short_token(message.text.split("/s/")[1].split()[0])
        contact = next(c for c in world.contacts if c.phone == message.to)
        assert (scope.alert_id, scope.contact_id) == (alert.pk, contact.pk)
    token = provider.sent[0].text.split("/s/")[1].split()[0]
    assert read_short_token(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert read_short_token("garbage") is None


def test_voice_message_says_the_same_without_a_link(world):
    alert = _alert(world, kind="emergency")
    text = render("alert", channel="voice", language="fr", alert=alert, contact_id=None, fix=alert.fixes.first())
    assert "grave danger" in text and "45.76404" in text and "/s/" not in text


def test_gsm7_transliteration():
    assert to_gsm7("Français «prêt» – sûr ± 5 m") == 'Francais "pret" - sur +/- 5 m'
    assert to_gsm7("é è à ù") == "é è à ù"


def test_contacts_reached_are_told_when_the_alert_is_resolved(world):
    from balise.alerts.actions import resolve_alert

    alert = _alert(world)
    provider = RecordingProvider()
    dispatcher = Dispatcher(providers=[provider], workers=4)
    drain(dispatcher)
    resolve_alert(alert, staff=world.staff, note="she is safe")
    drain(dispatcher)
    closing = [m for m in provider.sent if m.purpose == "notice"]
    assert sorted(m.to for m in closing) == sorted(c.phone for c in world.contacts)
    assert all("close" in m.text for m in closing)

"""What the live page says, as data: the press time, the band's words and tone, the
position in words, the carriers' delivery reports, the cancel line; and the first SMS's
"do not call her" when it fits one part."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from balise.alerts.actions import cancel_alert
from balise.alerts.models import Alert
from balise.dispatch import messages
from balise.dispatch.messages import first_sms, septets, sms_parts
from balise.dispatch.models import Delivery
from balise.inbound.actions import call_event
from balise.tracking import present
from balise.tracking.actions import answer_alert
from balise.tracking.places import Place, bearing_deg
from balise.tracking.present import page_state, place_text, pressed_at
from tests.contacts.helpers import raise_alert
from tests.personas import CANCEL_PIN

pytestmark = pytest.mark.django_db


def state(alert, contact, language="en"):
    alert.refresh_from_db()
    with translation.override(language):
        return page_state(alert, contact)


def test_since_is_the_press_not_the_receipt(world):
    alert = raise_alert(world, "emergency")
    Alert.objects.filter(pk=alert.pk).update(triggered_at=alert.created_at - timedelta(minutes=12))
    alert.refresh_from_db()
    assert pressed_at(alert) == alert.triggered_at
    assert "12\xa0minutes ago" in state(alert, world.contacts[0])["since_text"]
    # A device clock ahead of the server's is not believed.
    Alert.objects.filter(pk=alert.pk).update(triggered_at=alert.created_at + timedelta(hours=3))
    alert.refresh_from_db()
    assert pressed_at(alert) == alert.created_at


def test_the_band_names_answers_and_only_police_or_association_calm_it(world):
    alert = raise_alert(world, "emergency")
    me, alex, sam = world.contacts[0], world.contacts[1], world.contacts[2]
    s = state(alert, me)
    assert (s["tone"], s["status_text"]) == ("danger", "Nobody has answered yet. Call 17 or 112.")
    answer_alert(alert, channel="page", answer="cannot_help", contact=alex)
    s = state(alert, me)
    assert s["tone"] == "danger" and s["status_text"].startswith(f"{alex.name} cannot help (answered at ")
    assert "Nobody else has answered yet" in s["status_text"] and "Nobody has answered yet" not in s["status_text"]
    answer_alert(alert, channel="page", answer="on_my_way", contact=sam)
    s = state(alert, me)
    assert s["tone"] == "warn" and f"{sam.name} is on the way" in s["status_text"]
    answer_alert(alert, channel="page", answer="called_police", contact=world.contacts[3])
    s = state(alert, me)
    assert s["tone"] == "calm" and f"{world.contacts[3].name} called the police at " in s["status_text"]
    assert [a["text"].endswith(".") for a in s["answers"]] == [True, True, True]
    assert s["status_text"].index("called the police") < s["status_text"].index("is on the way") < s[
        "status_text"].index("cannot help")  # the police first
    answer_alert(alert, channel="page", answer="on_my_way", contact=alex)  # Alex changed his mind
    s = state(alert, me)
    assert "cannot help" not in s["status_text"] and len(s["answers"]) == 4
    fr = state(alert, me, "fr")
    assert f"{world.contacts[3].name} a appelé la police à " in fr["status_text"]


def test_the_headline_is_not_redundant(world):
    alert = raise_alert(world, "alarm")
    assert state(alert, world.contacts[0], "fr")["headline"] == "Camille est en grave danger\xa0: elle a déclenché son alarme"


def test_cancel_says_by_her_code_when_and_tells_whoever_called_the_police(world):
    alert = raise_alert(world, "emergency")
    police, other = world.contacts[0], world.contacts[1]
    answer_alert(alert, channel="page", answer="called_police", contact=police)
    cancel_alert(alert, CANCEL_PIN)
    s = state(alert, police)
    assert s["status"] == "cancelled" and s["tone"] == "closed" and not s["active"] and not s["dont_call"]
    assert s["headline"] == "Camille cancelled her alert"
    assert s["status_text"].startswith("She cancelled her alert with her code at ")
    assert "call them again (17)" in s["police_line"]
    assert state(alert, other)["police_line"] == ""


def test_the_position_in_words_distance_and_direction(world, monkeypatch):
    centre = Place("Lyon 01", "Rhône", "FR", 0.0, 45.7676, 4.8345)
    monkeypatch.setattr(present, "nearest", lambda lat, lon, wait=0.0: Place(
        centre.name, centre.region, "FR", 1.2, centre.lat, centre.lon))
    assert round(bearing_deg(45.0, 4.0, 46.0, 4.0)) == 0 and round(bearing_deg(45.0, 4.0, 45.0, 5.0)) == 90
    with translation.override("en"):
        assert place_text(45.7676 + 0.0108, 4.8345) == "1.2 km to the north of the centre of Lyon 01 (Rhône)"
    with translation.override("fr"):
        assert place_text(45.7676, 4.8345 + 0.0155) == "1,2 km à l'est du centre de Lyon 01 (Rhône)"
    monkeypatch.setattr(present, "nearest", lambda lat, lon, wait=0.0: Place("Lyon 01", "Rhône", "FR", 0.1, 45.7676, 4.8345))
    with translation.override("en"):
        assert place_text(45.7677, 4.8345) == "in the centre of Lyon 01 (Rhône)"
    monkeypatch.setattr(present, "nearest", lambda lat, lon, wait=0.0: None)
    assert place_text(0.0, 0.0) == ""


def test_the_carriers_delivery_reports_are_shown(world):
    alert = raise_alert(world, "prevention")
    rows = Delivery.objects.filter(alert=alert, channel="sms").order_by("contact__position")
    rows.update(state=Delivery.State.SENT)
    Delivery.objects.filter(pk=rows[0].pk).update(carrier_state="delivered", carrier_updated_at=timezone.now())
    Delivery.objects.filter(pk=rows[1].pk).update(carrier_state="undelivered", carrier_updated_at=timezone.now())
    names = [c.name for c in world.contacts]
    text = state(alert, world.contacts[0])["reached_text"]
    assert text.startswith(f"Alert SMS delivered to {names[0]}; sent to {names[2]}, ")
    assert text.endswith(f"(no delivery report yet); not delivered to {names[1]}.")
    assert "SMS d'alerte délivré à " + names[0] in state(alert, world.contacts[0], "fr")["reached_text"]


def test_the_calls_outcomes_are_shown(world):
    """Each contact's latest call as the provider's callbacks recorded it: ringing,
    answered by a person, voicemail, no answer, busy, failed."""
    alert = raise_alert(world, "emergency")
    first = Delivery.objects.get(alert=alert, channel="voice")  # the first contact; the others as escalation calls them

    def call_to(contact):
        return Delivery.objects.create(alert=alert, contact=contact, recipient=contact.phone, channel="voice",
                                       purpose=Delivery.Purpose.ESCALATION, state=Delivery.State.SENT)

    calls = [first, *(call_to(c) for c in world.contacts[1:])]
    for call, (status, answered_by) in zip(calls, [("in-progress", "human"), ("completed", "machine_start"),
                                                    ("no-answer", ""), ("busy", ""), ("ringing", "")]):
        assert call_event(str(call.pk), status=status, answered_by=answered_by) == "recorded"
    names = [c.name for c in world.contacts]
    french = state(alert, world.contacts[0], "fr")["reached_text"]
    assert (f"Appel à {names[0]} : décroché. Appel à {names[1]} : messagerie vocale. "
            f"Appel à {names[2]} : pas de réponse. Appel à {names[3]} : occupé. Appel à {names[4]} : sonne.") in french
    english = state(alert, world.contacts[0])["reached_text"]
    assert f"Call to {names[0]}: answered. Call to {names[1]}: voicemail. Call to {names[2]}: no answer." in english
    # A call the provider refused, then the next call to her: her latest call is what counts.
    Delivery.objects.filter(pk=calls[4].pk).update(state=Delivery.State.FAILED)
    assert f"Call to {names[4]}: failed." in state(alert, world.contacts[0])["reached_text"]
    later = call_to(world.contacts[4])
    assert call_event(str(later.pk), status="in-progress", answered_by="human") == "recorded"
    assert f"Call to {names[4]}: answered." in state(alert, world.contacts[0])["reached_text"]
    # and the page hears of it: its fingerprint changes with a call's news
    before = present.version(alert.pk)
    call_event(str(calls[2].pk), status="in-progress", answered_by="human")
    assert present.version(alert.pk) != before


NAMES = ["Camille", "Marie-Christine Delacroix-Fontaine", "Anne-Charlotte de La Tour d'Auvergne-Lauraguais"]
LONG_PLACE = Place("Saint-Remy-en-Bouzemont-Saint-Genest-et-Isson", "Grand Est", "FR", 0.4)
LYON = Place("Lyon 01", "Rhône", "FR", 0.4)


@pytest.mark.parametrize("site", ["https://balise.example.fr", "https://alerte.france-victimes-69.fr"])
@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_first_sms_says_do_not_call_her_only_when_it_fits_one_part(world, monkeypatch, settings, language, site):
    settings.SITE_URL = site
    warning = {"fr": "Ne l'appelez pas.", "en": "Do not call her."}[language]
    seen = {}
    for place in (LYON, LONG_PLACE):
        monkeypatch.setattr(messages, "nearest", lambda lat, lon, wait=0.0, place=place: place)
        for name in NAMES:
            world.person.display_name = name
            world.person.save()
            for kind in ("prevention", "emergency", "alarm"):
                alert = raise_alert(world, kind)
                with translation.override(language):
                    text = first_sms(alert, alert.fixes.first(), f"{site}/s/AbCdEfGhI")
                assert septets(text) <= 160 and sms_parts(text) == 1, text
                seen[(place.name, name, kind)] = warning in text
                Alert.objects.filter(pk=alert.pk).update(state="resolved")
    # A usual name, place and site address leave room for it; the longest ones do not,
    # and it goes (the message stays one part: the link and what to do matter more).
    if site == "https://balise.example.fr":
        assert seen[("Lyon 01", "Camille", "emergency")] and seen[("Lyon 01", "Camille", "prevention")]
    assert not seen[(LONG_PLACE.name, NAMES[2], "alarm")]

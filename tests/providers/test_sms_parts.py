"""One-part alert SMS and short links.

The first SMS of every alert fits one GSM 7-bit part (160 septets) in French and in
English, with the longest realistic names (person, place, site address): who, what,
where when it fits, the short link and what to do. Every other SMS template is counted
too. The short link is a random token of ten letters or digits, stored hashed, at
which the contact's live page is served until it expires."""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import signing
from django.db import models
from django.utils import timezone, translation

from balise.alerts.models import Acknowledgement, Alert
from balise.dispatch import messages
from balise.dispatch.messages import GSM7, first_sms, render, septets, sms_parts
from balise.tracking.actions import answer_alert
from balise.tracking.models import ShortLink
from balise.tracking.places import Place
from balise.tracking.shortlinks import ALPHABET, read_short_token, short_url
from balise.tracking.tokens import SALT
from tests.contacts.helpers import Rig, raise_alert
from tests.personas import make_world

pytestmark = pytest.mark.django_db

# The longest a real install and a real person make them.
SITE = "https://alerte.france-victimes-69.fr"  # (a longer address leaves less room: the place goes first)
NAMES = ["Camille", "Marie-Christine Delacroix-Fontaine", "Anne-Charlotte de La Tour d'Auvergne-Lauraguais"]
LONGEST_PLACE = Place("Saint-Remy-en-Bouzemont-Saint-Genest-et-Isson", "Grand Est", "FR", 0.4)
KINDS = ["prevention", "emergency", "alarm", "test"]
LINK = re.compile(re.escape(SITE) + rf"/s/([{ALPHABET}]{{10}})(?=\s)")


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE
    return settings


@pytest.fixture
def far_away(monkeypatch):
    """Her position is nearest to the commune with the longest name in France."""
    monkeypatch.setattr(messages, "nearest", lambda lat, lon, wait=0.0: LONGEST_PLACE)


_worlds = itertools.count()


def alert_of(name: str, kind: str = "emergency", duress: bool = False):
    world = make_world(slug=f"world{next(_worlds)}", contacts=2)
    world.person.display_name = name
    world.person.save()
    for contact in world.contacts:
        contact.name = "Jean-Baptiste Delacroix-Fontaine"
        contact.save()
    alert = raise_alert(world, kind)
    if duress:
        alert.duress = True
        alert.save(update_fields=["duress"])
    return world, alert


def sms(template: str, alert, language: str, contact_id=None) -> str:
    return render(template, channel="sms", language=language, alert=alert, contact_id=contact_id,
                  fix=alert.fixes.first())


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("name", NAMES)
def test_the_first_sms_of_every_alert_fits_one_gsm7_part(site, far_away, language, name):
    for kind in KINDS:
        for duress in (False, True):
            world, alert = alert_of(name, kind, duress)
            contact = world.contacts[0]
            text = sms("duress" if duress else "alert", alert, language, contact.pk)
            assert all(ch in GSM7 for ch in text), text
            assert septets(text) <= 160 and sms_parts(text) == 1, (len(text), text)
            assert LINK.search(text), text  # the link, whole
            assert ("17" in text and "112" in text) if kind != "test" or duress else "TEST" in text, text
            assert name.split()[0][:6] in text  # who (the name cut last, its first letters stay)
            if not duress and kind != "test":
                assert ("OK" in text), text  # what to do
            if name == "Camille" and not duress:  # a usual name leaves room for where she is (the place, or its coordinates)
                assert "Saint-Remy-en-Bouzemont" in text or "45.7578,4.8320" in text, text


def test_the_place_is_shortened_before_the_name_and_dropped_before_the_link(settings, far_away):
    settings.SITE_URL = "https://balise.fr"
    world, alert = alert_of("Camille")
    text = sms("alert", alert, "en", world.contacts[0].pk)
    assert "Camille" in text and "near Saint-Remy-en-Bouzemont-Saint-Genest-et-Isson (Grand Est)" not in text
    assert "near Saint-Remy-en-Bouzemont-Saint-Genest-et-Isson." in text  # the region went first
    settings.SITE_URL = SITE
    world, alert = alert_of(NAMES[2])
    text = sms("alert", alert, "en", world.contacts[0].pk)
    assert "Anne-Charlotte" in text and LINK.search(text)
    # With nothing known of where she is, it says so.
    world, alert = alert_of("Camille")
    alert.fixes.all().delete()
    assert "position" in sms("alert", alert, "en", world.contacts[0].pk)


def test_every_sms_template_is_counted(site, far_away):
    """The parts of every SMS template, French and English, longest names: the alert's
    first SMS is one part; notices stay short (two parts at most)."""
    counts = {}
    for language in ("fr", "en"):
        world, alert = alert_of(NAMES[2])
        contact = world.contacts[0]
        for template in ("alert", "duress", "cancelled", "resolved", "test", messages.UNDELIVERABLE,
                         "over_budget_device", "over_budget_association", "reply_unclear"):
            counts[(language, template)] = sms_parts(sms(template, alert, language, contact.pk))
        answer_alert(alert, channel=Acknowledgement.Channel.SMS, answer="on_my_way", contact=world.contacts[1])
        counts[(language, "ack")] = sms_parts(sms("ack", alert, language, contact.pk))
    assert {k: v for k, v in counts.items() if k[1] in ("alert", "duress")} == {
        (lang, t): 1 for lang in ("fr", "en") for t in ("alert", "duress")}
    assert max(counts.values()) <= 2, counts
    assert sms_parts("é" * 160) == 1 and sms_parts("€" * 80) == 1 and sms_parts("€" * 81) == 2
    assert sms_parts("ê") == 1 and sms_parts("ê" * 71) == 2  # UCS-2: 70, then 67 per part


def stored_anywhere(text: str) -> list[str]:
    """The columns of any table that hold TEXT."""
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, (models.CharField, models.TextField)) and \
                    model._default_manager.filter(**{f"{field.attname}__contains": text}).exists():
                found.append(f"{model._meta.label}.{field.name}")
    return found


def test_the_sms_link_is_a_random_stored_hashed_token_at_which_the_page_is_served(site, client, world):
    rig = Rig()
    try:
        alert = raise_alert(world, "emergency")
        rig.drain()
        texts = {m.to: m.text for m in rig.sent(alert, channel="sms")}
    finally:
        rig.close()
    contact = world.contacts[0]
    token = LINK.search(texts[contact.phone]).group(1)
    assert len(token) == 10 and set(token) <= set(ALPHABET)
    assert len({LINK.search(t).group(1) for t in texts.values()}) == len(texts)  # a link per message
    # stored hashed: the raw token is nowhere in the database
    assert stored_anywhere(token) == []
    row = ShortLink.objects.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
    assert (row.alert_id, row.contact_id) == (alert.pk, contact.pk)
    # the page is served at the link itself: the address she keeps has no id, no signed blob
    page = client.get(f"/s/{token}", follow=True)
    assert page.status_code == 200 and page.redirect_chain == [] and "Camille" in page.content.decode()
    assert page.request["PATH_INFO"] == f"/s/{token}" and ":" not in token
    with pytest.raises(signing.BadSignature):
        signing.loads(token, salt=SALT)
    # her answer from the page comes back to the same address
    answered = client.post(f"/s/{token}/answer", {"answer": "on_my_way"})
    assert answered.status_code == 302 and answered["Location"] == f"/s/{token}?answered=1"
    assert alert.acknowledgements.get().contact == contact
    # unknown and expired: the same plain "not valid or expired" page, 404
    unknown = client.get(f"/s/{token[:-1]}{'a' if token[-1] != 'a' else 'b'}")
    assert unknown.status_code == 404 and "Camille" not in unknown.content.decode()
    assert client.get("/s/not-a-token-at-all").status_code == 404
    ShortLink.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.get(f"/s/{token}")
    assert expired.status_code == 404 and expired.content == unknown.content
    assert read_short_token(token) is None


def test_links_sent_before_random_tokens_open_the_page_until_they_expire(site, client, world):
    """The nine-character links of earlier releases (derived, stored as their SHA-256)."""
    alert = raise_alert(world, "emergency")
    old = "aB3dE0gH1"
    ShortLink.objects.create(token_hash=hashlib.sha256(old.encode()).hexdigest(), alert=alert,
                             contact=world.contacts[1], expires_at=timezone.now() + timedelta(days=1))
    page = client.get(f"/s/{old}")
    assert page.status_code == 200 and "Camille" in page.content.decode()
    Alert.objects.filter(pk=alert.pk).update(state=Alert.State.RESOLVED, closed_at=timezone.now() - timedelta(days=2))
    assert client.get(f"/s/{old}").status_code == 404  # the page's own rule: a day after closing


def test_each_message_gets_its_own_link_to_the_same_page(site, world):
    alert = raise_alert(world, "emergency")
    first, second = short_url(alert, world.contacts[0].pk), short_url(alert, world.contacts[0].pk)
    assert first != second
    assert read_short_token(first.rsplit("/", 1)[1]) == read_short_token(second.rsplit("/", 1)[1])


def test_first_sms_keeps_the_link_and_what_to_do_even_with_a_very_long_address(site, far_away, settings):
    world, alert = alert_of(NAMES[1])
    link = "https://" + "x" * 60 + ".example.org/s/AbCdEfGhI"
    with translation.override("en"):
        text = first_sms(alert, alert.fixes.first(), link)
    assert link in text and "112" in text and septets(text) <= 160
    assert text.startswith("BALISE: Ma")  # what was left of her name

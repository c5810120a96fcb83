"""The live alert page, its JSON and SSE feeds, answers, and the consent page."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone

from balise.alerts.actions import FixIn, add_fixes, cancel_alert
from balise.alerts.models import Alert
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.people.actions import add_contact
from balise.tracking.models import LinkFailure, ShortLink
from balise.tracking.shortlinks import ALPHABET, LENGTH, mint
from balise.tracking.tokens import SALT, make_consent_token
from tests.contacts.helpers import page_link, raise_alert
from tests.personas import CANCEL_PIN
from tests.spine.helpers import RecordingProvider, drain


link = page_link


def assert_plain_error(response, status, world):
    assert response.status_code == status
    body = response.content.decode()
    assert "Camille" not in body and "45.7" not in body and "Proche" not in body
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "no-referrer"


def test_the_page_shows_who_what_where_and_what_to_do(client, world, place_names):
    alert = raise_alert(world, "emergency")
    r = client.get(link(alert, world.contacts[0]))
    assert r.status_code == 200
    html = r.content.decode()
    assert "Camille" in html and "45.75780, 4.83200" in html
    assert 'href="tel:17"' in html and 'href="tel:112"' in html and 'href="sms:114"' in html
    assert "geo:45.757800,4.832000" in html
    assert "Lyon" in html  # nearest place name, from the offline gazetteer
    assert "leaflet/leaflet.js" in html
    # nothing about anyone else: no phone number of any contact, nor hers
    for c in world.contacts:
        assert c.phone not in html and c.phone[-9:] not in html
    assert r["Referrer-Policy"] == "no-referrer" and "no-store" in r["Cache-Control"]
    assert "script-src 'self'" in r["Content-Security-Policy"]


def test_state_json_follows_fixes_and_answers(client, world):
    alert = raise_alert(world, "prevention")
    url = link(alert, world.contacts[0])
    state = client.get(f"{url}/state").json()
    assert state["active"] and state["status"] == "open" and len(state["trail"]) == 1
    add_fixes(alert, [FixIn(lat=45.76, lon=4.84, accuracy_m=10, recorded_at=timezone.now(), client_id=uuid.uuid4())])
    r = client.post(link(alert, world.contacts[2]) + "/answer", {"answer": "on_my_way"}, HTTP_ACCEPT="application/json")
    assert r.status_code == 200 and r.json()["my_answer"] == "on_my_way"
    state = client.get(f"{url}/state").json()
    assert state["fix"]["coords"] == "45.76000, 4.84000" and len(state["trail"]) == 2
    assert state["status"] == "acknowledged"
    assert [(a["who"], a["answer"], a["mine"]) for a in state["answers"]] == [("Proche 3", "on_my_way", False)]
    assert "phone" not in json.dumps(state) and world.contacts[2].phone not in json.dumps(state)


def test_answer_without_javascript_redirects_back(client, world):
    alert = raise_alert(world, "prevention")
    url = link(alert, world.contacts[0])
    r = client.post(url + "/answer", {"answer": "called_police"})
    assert r.status_code == 302 and r["Location"].endswith("?answered=1")
    alert.refresh_from_db()
    assert alert.state == "acknowledged"
    r = client.post(url + "/answer", {"answer": "nonsense"}, HTTP_ACCEPT="application/json")
    assert r.status_code == 400


def test_the_event_stream_sends_the_state(client, world, settings):
    alert = raise_alert(world, "prevention")
    cancel_alert(alert, CANCEL_PIN)  # closed: the stream sends the last state and ends
    r = client.get(link(alert, world.contacts[0]) + "/events")
    assert r["Content-Type"] == "text/event-stream"
    body = b"".join(r.streaming_content).decode()
    data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert data[-1]["status"] == "cancelled" and not data[-1]["active"]


def test_duress_shows_the_truth_to_contacts(client, world):
    from tests.personas import DURESS_PIN

    alert = raise_alert(world, "prevention")
    cancel_alert(alert, DURESS_PIN)
    state = client.get(link(alert, world.contacts[0]) + "/state").json()
    assert state["status"] == "duress" and state["active"]


def test_altered_foreign_unknown_and_expired_links_get_the_same_plain_error(client, world, other_world, settings):
    settings.TRACKING_LINK_MAX_FAILURES = 1000  # (many wrong links from one source: see the next test)
    alert = raise_alert(world, "prevention")
    token = link(alert, world.contacts[0]).rsplit("/", 1)[1]
    # altered: one character changed; a legacy signed link on the short path
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    signed = signing.dumps([alert.pk, world.contacts[0].pk], salt=SALT, compress=True)
    # foreign: a stored link whose contact is another person's
    foreign = mint([(alert.pk, other_world.contacts[0].pk)])[0].rsplit("/", 1)[1]
    for bad in (altered, signed, foreign, "x", "a" * 300):
        for suffix in ("", "/state", "/events"):
            r = client.get(f"/s/{bad}{suffix}")
            assert r.status_code == 404, (bad, suffix)
            assert b"Camille" not in r.content
        r = client.post(f"/s/{bad}/answer", {"answer": "on_my_way"})
        assert_plain_error(r, 404, world)
    assert_plain_error(client.get(f"/s/{foreign}"), 404, world)
    assert not alert.acknowledgements.exists()
    # expired: closed longer ago than the TTL (the same page: nothing says it ever worked)
    settings.TRACKING_LINK_TTL_AFTER_CLOSE = 3600
    cancel_alert(alert, CANCEL_PIN)
    assert client.get(f"/s/{token}").status_code == 200  # still readable just after closing
    Alert.objects.filter(pk=alert.pk).update(closed_at=timezone.now() - timedelta(hours=2))
    unknown = client.get("/s/Zz23456789")
    assert_plain_error(client.get(f"/s/{token}"), 404, world)
    assert client.get(f"/s/{token}").content == unknown.content
    assert client.get(f"/s/{token}/state").status_code == 404
    # and too old, whatever the alert
    Alert.objects.filter(pk=alert.pk).update(closed_at=timezone.now())
    assert client.get(f"/s/{token}").status_code == 200
    ShortLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_plain_error(client.get(f"/s/{token}"), 404, world)
    assert client.get(f"/s/{token}").content == unknown.content


def test_a_legacy_signed_link_leads_to_a_short_link_until_it_expires(client, world, settings):
    """/a/<signed [alert id, contact id]>, what earlier releases opened the page at (a page
    still open during the upgrade reloads there): on to a short link of its own."""
    alert = raise_alert(world, "prevention")
    signed = signing.dumps([alert.pk, world.contacts[0].pk], salt=SALT, compress=True)
    r = client.get(f"/a/{signed}")
    assert r.status_code == 302
    path = r["Location"].split(settings.SITE_URL, 1)[1]
    # a random token of its own (its letters may hold any digit, the alert's number included)
    assert re.fullmatch(rf"/s/[{ALPHABET}]{{{LENGTH}}}", path)
    assert "Camille" in client.get(path).content.decode()
    assert_plain_error(client.get(f"/a/{signed[:-1]}x"), 404, world)
    settings.TRACKING_LINK_MAX_AGE = -1  # signed links older than this are refused
    assert_plain_error(client.get(f"/a/{signed}"), 404, world)


def test_guessing_links_is_slowed_down_per_source(client, world, settings):
    settings.TRACKING_LINK_MAX_FAILURES = 3
    alert = raise_alert(world, "prevention")
    path = link(alert, world.contacts[0])
    for _ in range(5):
        assert client.get(path).status_code == 200  # opening her own link costs nothing
    for guess in ("Zz23456782", "Zz23456783", "Zz23456784"):
        assert client.get(f"/s/{guess}").status_code == 404
    # past the limit, this source is refused whatever it sends, her own link too
    refused = client.get(path)
    assert_plain_error(refused, 429, world)
    assert "réessayez dans quelques minutes" in refused.content.decode() and "112" in refused.content.decode()
    state = client.get(f"{path}/state")
    assert (state.status_code, state.json()) == (429, {"error": "too_many_attempts"})
    assert client.post(f"{path}/answer", {"answer": "on_my_way"}).status_code == 429
    assert not alert.acknowledgements.exists()
    # another source is not held back (no cap on everyone: that would shut every contact out)
    assert client.get(path, REMOTE_ADDR="192.0.2.7").status_code == 200
    # the source is kept as a hash, and forgotten once the window has passed
    assert not LinkFailure.objects.filter(source__contains="127.0.0.1").exists()
    LinkFailure.objects.update(at=timezone.now() - timedelta(minutes=16))
    assert client.get(path).status_code == 200


def test_contact_a_cannot_answer_as_contact_b(client, world):
    alert = raise_alert(world, "prevention")
    client.post(link(alert, world.contacts[0]) + "/answer", {"answer": "on_my_way"})
    assert [a.contact_id for a in alert.acknowledgements.all()] == [world.contacts[0].pk]


def test_tokens_never_reach_the_logs(client, world, caplog):
    alert = raise_alert(world, "prevention")
    token = link(alert, world.contacts[0]).rsplit("/", 1)[1]
    with caplog.at_level("DEBUG"):
        client.get(f"/s/{token}x")
        client.get(f"/s/{token}")
        client.post(f"/s/{token}x/answer", {"answer": "on_my_way"})
    assert token not in caplog.text


def test_a_closed_alert_refuses_answers(client, world):
    alert = raise_alert(world, "prevention")
    cancel_alert(alert, CANCEL_PIN)
    r = client.post(link(alert, world.contacts[0]) + "/answer", {"answer": "on_my_way"}, HTTP_ACCEPT="application/json")
    assert r.status_code == 409 and r.json()["state"]["status"] == "cancelled"
    assert not alert.acknowledgements.exists()


# -- consent -----------------------------------------------------------------------------

@pytest.fixture
def newcomer(db):
    from tests.personas import make_world

    world = make_world("brest", contacts=2)
    return world, add_contact(world.person, name="Nadia", phone="06 98 76 54 32", language="fr")


def invitations(contact):
    return Delivery.objects.filter(contact=contact, purpose="invitation", alert__isnull=True)


def only_invitation_of(contact):
    """Leave in the outbox only CONTACT's invitation (the others' go elsewhere)."""
    Delivery.objects.exclude(pk__in=invitations(contact).values("pk")).delete()
    return invitations(contact).get()


def test_adding_a_contact_sends_an_invitation(newcomer):
    world, contact = newcomer
    assert contact.consent == "pending"
    message = only_invitation_of(contact)
    assert message.template == "invitation" and message.language == "fr" and "/c/" in message.text
    provider = RecordingProvider()
    dispatcher = Dispatcher(name="test", providers=[provider], workers=2)
    try:
        drain(dispatcher)
        [sms] = provider.sent
        assert sms.to == "+33698765432" and sms.channel == "sms" and "Camille" in sms.text and "/c/" in sms.text
        assert sms.key == str(message.pk) and sms.purpose == "invitation"
        message.refresh_from_db()
        assert message.state == "sent" and message.provider == "recording"
        drain(dispatcher)
        assert len(provider.sent) == 1  # sent once
    finally:
        dispatcher.close()


def test_invitation_retries_after_a_provider_failure(newcomer):
    from balise.providers.base import UnavailableError

    world, contact = newcomer
    message = only_invitation_of(contact)
    provider = RecordingProvider(fail=[UnavailableError("down")])
    dispatcher = Dispatcher(name="test", providers=[provider], workers=2)
    try:
        dispatcher.tick()
        deadline = time.monotonic() + 10
        while dispatcher.in_flight and time.monotonic() < deadline:
            dispatcher.tick()
            time.sleep(0.01)
        message.refresh_from_db()
        assert message.state == "pending" and "down" in message.last_error and not provider.sent
        Delivery.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        drain(dispatcher)
        assert [m.key for m in provider.sent] == [str(message.pk)]
    finally:
        dispatcher.close()


def test_consent_page_accept_then_step_down(client, newcomer):
    world, contact = newcomer
    url = f"/c/{make_consent_token(contact)}"
    page = client.get(url).content.decode()
    assert "Camille" in page and world.association.name in page and "17" in page
    assert 'value="accept"' in page and 'value="decline"' in page
    r = client.post(url, {"choice": "accept"})
    assert r.status_code == 302
    contact.refresh_from_db()
    assert contact.consent == "accepted" and contact.consent_changed_at is not None
    assert 'value="decline"' in client.get(url).content.decode()  # now: step down
    client.post(url, {"choice": "decline"})
    contact.refresh_from_db()
    assert contact.consent == "withdrawn"
    assert Delivery.objects.filter(contact=contact, template="stepped_down", purpose="contact_notice").exists()
    client.post(url, {"choice": "accept"})  # and come back
    contact.refresh_from_db()
    assert contact.consent == "accepted"


def test_consent_page_decline_and_bad_input(client, newcomer):
    world, contact = newcomer
    url = f"/c/{make_consent_token(contact)}"
    assert client.post(url, {"choice": "maybe"}).status_code == 400
    client.post(url, {"choice": "decline"})
    contact.refresh_from_db()
    assert contact.consent == "declined"


def test_consent_links_bad_or_for_a_changed_number_are_refused(client, newcomer):
    world, contact = newcomer
    token = make_consent_token(contact)
    assert client.get(f"/c/{token}x").status_code == 404
    signed = signing.dumps([1, contact.pk], salt=SALT, compress=True)
    assert client.get(f"/c/{signed}").status_code == 404  # an alert link is not a consent link
    contact.phone = "+33698765433"
    contact.save()
    r = client.get(f"/c/{token}")
    assert r.status_code == 404 and b"Camille" not in r.content


def test_the_live_page_links_to_stepping_down(client, world):
    alert = raise_alert(world, "prevention")
    html = client.get(link(alert, world.contacts[0])).content.decode()
    assert "/c/" in html


def test_the_on_call_link_can_answer_as_the_association(client, world):
    alert = raise_alert(world, "prevention")
    r = client.post(link(alert, None) + "/answer", {"answer": "on_my_way"}, HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    assert r.json()["answers"][0]["who"] == "La ligne d'astreinte de l'association"


def test_token_salt_is_the_tracking_one():
    assert SALT == "balise.tracking.link"

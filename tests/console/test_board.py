"""The on-call board and an alert's page: scoped to the staff member's associations,
acting follows her role, and every action goes through the alert's real operations."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from balise.alerts.actions import FixIn, add_fixes
from balise.alerts.models import Alert, Outcome
from balise.associations.models import Membership
from balise.console.models import AuditEntry
from balise.console.timeline import describe_events
from balise.devices.models import Device
from balise.dispatch.models import Delivery
from balise.supervision.checks import run_checks
from balise.supervision.models import SupervisionEvent
from balise.tracking.actions import answer_alert
from tests.contacts.helpers import raise_alert
from tests.personas import another_holder, staff_client

pytestmark = pytest.mark.django_db


def as_role(world, role):
    Membership.objects.filter(user=world.staff).update(role=role)
    return staff_client(world.staff)


def test_the_board_needs_a_login(client):
    response = client.get(reverse("console:board"), HTTP_HOST="127.0.0.1")
    assert response.status_code == 302 and reverse("console:login") in response["Location"]


def test_a_user_without_membership_sees_nothing(world, django_user_model):
    stranger = django_user_model.objects.create_user("stranger", password="correct horse battery")
    assert staff_client(stranger).get(reverse("console:board")).status_code == 403


def test_the_board_lists_open_alerts_newest_first_and_only_hers(world, other_world):
    first = raise_alert(world, "prevention")
    # A press while her alert is open joins it: the second open alert is another person's.
    second = raise_alert(world, "alarm", device=another_holder(world, "b")[1])
    foreign = raise_alert(other_world, "alarm")
    staff = staff_client(world.staff)
    page = staff.get(reverse("console:board_list")).content.decode()
    assert first.pk != second.pk
    assert page.index(f'data-alert="{second.pk}"') < page.index(f'data-alert="{first.pk}"')
    assert f'data-alert="{foreign.pk}"' not in page
    assert staff.get(reverse("console:alert", args=[foreign.pk])).status_code == 404
    assert staff.get(reverse("console:alert_live", args=[foreign.pk])).status_code == 404
    assert staff.post(reverse("console:alert_take", args=[foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.state == Alert.State.OPEN


def test_an_alert_page_shows_press_time_position_contacts_and_escalation(world):
    alert = raise_alert(world, "emergency", accuracy=30)
    with translation.override("fr"):
        page = staff_client(world.staff).get(reverse("console:alert", args=[alert.pk]), HTTP_ACCEPT_LANGUAGE="fr")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Camille" in html and "45.75780, 4.83200" in html and "30 m" in html
    for contact in world.contacts:
        assert contact.name in html and f'href="tel:{contact.phone}"' in html
    assert f'href="tel:{world.association.on_call_number}"' in html
    assert 'id="escalation"' in html and 'data-trail="45.757800,4.832000"' in html


def test_duress_is_red_on_the_board(world):
    alert = raise_alert(world, "prevention")
    Alert.objects.filter(pk=alert.pk).update(duress=True)
    html = staff_client(world.staff).get(reverse("console:board_list")).content.decode()
    assert "card kind-prevention state-open duress" in html


def test_take_charge_note_and_close_with_an_outcome(world):
    alert = raise_alert(world, "alarm")
    staff = staff_client(world.staff)
    assert staff.post(reverse("console:alert_take", args=[alert.pk])).status_code == 302
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED and alert.taken_by == world.staff
    assert not Delivery.objects.filter(alert=alert, purpose="escalation", state="pending").exists()
    staff.post(reverse("console:alert_note", args=[alert.pk]), {"text": "Appelée, elle est chez sa sœur"})
    assert staff.post(reverse("console:alert_close", args=[alert.pk]), {"outcome": "bogus"}).status_code == 302
    alert.refresh_from_db()
    assert alert.is_active  # a bad outcome closes nothing
    staff.post(reverse("console:alert_close", args=[alert.pk]), {"outcome": Outcome.PERSON_SAFE, "note": "Rappel demain"})
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED and alert.outcome == Outcome.PERSON_SAFE
    assert alert.outcome_note == "Rappel demain"
    kinds = list(alert.events.values_list("kind", flat=True))
    assert {"taken", "note", "resolved", "outcome"} <= set(kinds)
    actions = set(AuditEntry.objects.filter(alert=alert).values_list("action", flat=True))
    assert {"take_charge", "note", "close"} <= actions
    # Closed: taking charge again is refused with a message, nothing changes.
    staff.post(reverse("console:alert_take", args=[alert.pk]))
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED


def test_a_read_only_member_follows_but_cannot_act(world):
    alert = raise_alert(world, "alarm")
    viewer = as_role(world, Membership.Role.VIEWER)
    page = viewer.get(reverse("console:alert", args=[alert.pk])).content.decode()
    assert 'id="take"' not in page and 'id="close"' not in page
    for name, data in (("alert_take", {}), ("alert_note", {"text": "x"}), ("alert_close", {"outcome": "other"})):
        assert viewer.post(reverse(f"console:{name}", args=[alert.pk]), data).status_code == 403
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN and not alert.events.filter(kind="note").exists()


def test_a_contact_answer_shows_in_the_live_fragment(world):
    alert = raise_alert(world, "prevention")
    answer_alert(alert, channel="page", answer="on_my_way", contact=world.contacts[1])
    with translation.override("en"):
        html = staff_client(world.staff).get(reverse("console:alert_live", args=[alert.pk]),
                                             HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "on my way" in html
    assert "Proche 2: I am on my way (live page)" in html


def test_the_timeline_reads_as_sentences_to_the_second(world):
    alert = raise_alert(world, "prevention")
    answer_alert(alert, channel="sms", contact=world.contacts[0])
    with translation.override("fr"):
        lines = [f"{line.clock} {line.text}" for line in describe_events(alert)]
    assert re.fullmatch(r"\d\d:\d\d:\d\d Alerte prévention de Camille reçue \(bouton pressé à \d\d:\d\d:\d\d\)", lines[0])
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d Proche 1 : je m'en occupe \(réponse par SMS\)", x) for x in lines), lines
    joined = " ".join(lines)
    assert "{" not in joined and "object" not in joined and not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", joined)


def test_the_back_office_alert_page_shows_the_same_sentences(world, django_user_model):
    alert = raise_alert(world, "prevention")
    answer_alert(alert, channel="page", answer="called_police", contact=world.contacts[2])
    admin = django_user_model.objects.create_superuser("root", password="correct horse battery")
    with translation.override("fr"):
        html = staff_client(admin).get(reverse("admin:alerts_alert_change", args=[alert.pk]),
                                       HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Proche 3 : J&#x27;ai appelé la police" in html
    assert "AlertEvent object" not in html


def test_the_back_office_list_shows_duress_in_red(world, django_user_model):
    alert = raise_alert(world, "prevention")
    Alert.objects.filter(pk=alert.pk).update(duress=True)
    admin = django_user_model.objects.create_superuser("root", password="correct horse battery")
    with translation.override("fr"):
        html = staff_client(admin).get(reverse("admin:alerts_alert_changelist"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert '<strong style="color:#b00020">CONTRAINTE</strong>' in html and "icon-yes.svg" not in html


def test_the_next_escalation_step_reads_with_its_date_when_not_today(world):
    from datetime import timedelta

    from django.utils import timezone

    from balise.console.present import escalation
    from balise.dispatch.models import EscalationTimer

    alert = raise_alert(world, "emergency")
    timer = EscalationTimer.objects.filter(alert=alert, state=EscalationTimer.State.PENDING).order_by("due_at").first()
    assert timer is not None
    noon = timezone.localtime().replace(hour=12, minute=0, second=0)
    EscalationTimer.objects.filter(pk=timer.pk).update(due_at=noon)
    with translation.override("fr"):
        today = escalation(alert)["next_clock"]
        assert today == "12:00:00"
        EscalationTimer.objects.filter(pk=timer.pk).update(due_at=timezone.now() + timedelta(days=1, hours=1))
        later = escalation(alert)["next_clock"]
    assert later != today and re.search(r"\d\d/\d\d/\d{4}", later), later



def _open_board_world(world, alerts: int = 3, low_batteries: int = 3) -> list[Alert]:
    """A busy night: ALERTS open alerts (each her own person) and LOW_BATTERIES technical alarms."""
    raised = [raise_alert(world, "alarm")]
    for i in range(1, max(alerts, low_batteries) + 1):
        device = another_holder(world, f"p{i}")[1]
        device.battery_percent = 10
        device.save()
        if i < alerts:
            raised.append(raise_alert(world, "prevention", device=device))
    run_checks(timezone.now())
    return raised


def _new_version(staff, url: str, etag: str) -> str:
    """The list after a change: rendered again, under a new version."""
    response = staff.get(url, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and response["ETag"] != etag
    assert staff.get(url, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    return response["ETag"]


def test_an_unchanged_poll_of_the_board_answers_304_in_a_few_queries(world, django_assert_max_num_queries):
    alerts = _open_board_world(world)
    staff = staff_client(world.staff)
    url = reverse("console:board_list")
    first = staff.get(url)
    html = first.content.decode()
    assert first.status_code == 200 and html.count("data-alert=") == 3 and html.count("data-supervision=") == 3
    etag = first["ETag"]
    # Nothing changed: no body. The session, her user, her second factor, her memberships,
    # and two queries for the version (it was 6 + 2 per open alert, rendered every second).
    with django_assert_max_num_queries(6):
        unchanged = staff.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged["ETag"] == etag
    assert unchanged["Cache-Control"] == "no-store"

    # Each change the list shows makes a new version: a new position, a worker taking
    # charge, a new alert, a technical alarm cleared, a battery level, another language.
    add_fixes(alerts[1], [FixIn(lat=45.8, lon=4.9, accuracy_m=10, recorded_at=timezone.now(), source="gps",
                                client_id=uuid.uuid4())])
    etag = _new_version(staff, url, etag)
    assert staff.post(reverse("console:alert_take", args=[alerts[2].pk])).status_code == 302
    etag = _new_version(staff, url, etag)
    raise_alert(world, "emergency", device=another_holder(world, "late")[1])
    etag = _new_version(staff, url, etag)
    SupervisionEvent.objects.filter(cleared_at__isnull=True).order_by("pk").first().delete()
    etag = _new_version(staff, url, etag)
    Device.objects.filter(battery_percent=10).update(battery_percent=9)
    etag = _new_version(staff, url, etag)
    english = staff.get(url, HTTP_IF_NONE_MATCH=etag, HTTP_ACCEPT_LANGUAGE="en")
    assert english.status_code == 200 and "nobody on it yet" in english.content.decode()


def test_the_alert_pane_says_the_next_escalation_step_and_numbers_as_they_are_dialled(world):
    alert = raise_alert(world, "emergency")
    staff = staff_client(world.staff)
    html = staff.get(reverse("console:alert", args=[alert.pk])).content.decode()
    escalation = re.sub(r"\s+", " ", html.split('id="escalation">')[1].split("</p>")[0])
    assert escalation.startswith("Escalade : étape 1 sur ") and " à <strong>" in escalation  # not "step 0"
    contact = world.contacts[0]
    assert f'<a class="tel" href="tel:{contact.phone}">06 12 34 56 01</a>' in html
    assert "Rappeler" not in html  # (the number is under her name, not in a column of its own)
    staff.post(reverse("console:alert_take", args=[alert.pk]))
    html = staff.get(reverse("console:alert", args=[alert.pk])).content.decode()
    assert re.search(r"Escalade : 0 sur \d+ étapes effectuées · arrêtée", re.sub(r"\s+", " ", html))
    test = raise_alert(world, "test", device=another_holder(world, "t")[1])
    html = staff.get(reverse("console:alert", args=[test.pk])).content.decode()
    assert "Pas d'escalade pour ce type d'alerte." in html

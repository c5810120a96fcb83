"""Supervision from what a station says of itself (modem, microphone, each button), from
a failing provider, and the periodic test reminders: each raises one event per episode
(one SMS), and is cleared when it recovers. The clock is an argument of run_checks."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from balise.associations.models import Membership
from balise.devices.models import Device
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.people.models import Person
from balise.providers import health
from balise.providers.base import UnavailableError
from balise.providers.health import Guarded
from balise.supervision.checks import run_checks
from balise.supervision.messages import notice_text
from balise.supervision.models import PeriodicTest, SupervisionEvent
from tests.contacts.helpers import raise_alert
from tests.personas import staff_client
from tests.spine.helpers import RecordingProvider, drain

pytestmark = pytest.mark.django_db


def notices(**events):
    """The outbox rows that told of the supervision events matching EVENTS."""
    return Delivery.objects.filter(purpose="supervision",
                                   pk__in=SupervisionEvent.objects.filter(**events).values("notice_id"))


def heartbeat(world, expect: int = 200, **body):
    api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {world.token}")
    r = api.post("/api/v1/heartbeat", json.dumps(body), content_type="application/json")
    assert r.status_code == expect, r.content
    return r


def kinds(open_only: bool = True) -> list[str]:
    rows = SupervisionEvent.objects.all()
    if open_only:
        rows = rows.filter(cleared_at__isnull=True)
    return sorted(rows.values_list("kind", flat=True))


# -- the heartbeat's schema ------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"modem": "broken"}, "modem"),
    ({"microphone": True}, "microphone"),
    ({"buttons": [{"hardware_id": "AA:BB", "connected": "yes"}]}, "connected"),
    ({"buttons": [{"hardware_id": "AA:BB", "connected": False, "since": "2019-01-01T00:00:00Z"}]}, "since"),
    ({"buttons": [{"hardware_id": "", "connected": False}]}, "hardware_id"),
    ({"buttons": [{"hardware_id": "AA:BB", "connected": True}, {"hardware_id": "AA:BB", "connected": False}]},
     "buttons"),
    ({"buttons": [{"hardware_id": f"AA:{i:02d}", "connected": True} for i in range(11)]}, "buttons"),
    ({"buttons": {"hardware_id": "AA:BB", "connected": True}}, "buttons"),
    ({"incidents": [{"id": "7c0b6f0e-0000-4000-8000-000000000001", "kind": "server_unreachable",
                     "started": "2026-11-30T10:00:00Z", "ended": "2026-11-30T09:00:00Z"}]}, "ended"),
    ({"incidents": [{"id": "7c0b6f0e-0000-4000-8000-000000000001", "kind": "rebooted",
                     "started": "2026-11-30T10:00:00Z", "ended": "2026-11-30T10:00:00Z"}]}, "kind"),
    ({"incidents": [{"id": "7c0b6f0e-0000-4000-8000-000000000001", "kind": "alert_refused", "count": 0,
                     "started": "2026-11-30T10:00:00Z", "ended": "2026-11-30T10:00:00Z"}]}, "count"),
])
def test_a_wrong_station_report_is_refused_naming_the_field(world, body, field):
    r = heartbeat(world, expect=422, **body)
    assert field in r.content.decode()
    device = Device.objects.get(pk=world.device.pk)
    assert device.modem_state == "" and device.buttons_state == []


def test_the_station_report_is_kept_on_the_device_and_an_older_heartbeat_changes_nothing(world):
    heartbeat(world, modem="ok", microphone="unusable",
              buttons=[{"hardware_id": "AA:BB:CC:DD:EE:01", "connected": True, "battery_percent": 80}])
    device = Device.objects.get(pk=world.device.pk)
    assert (device.modem_state, device.microphone_state) == ("ok", "unusable")
    assert [(b["hardware_id"], b["connected"]) for b in device.buttons_state] == [("AA:BB:CC:DD:EE:01", True)]
    heartbeat(world, battery_percent=90)  # a station that says nothing of its parts: nothing forgotten
    device.refresh_from_db()
    assert device.microphone_state == "unusable" and len(device.buttons_state) == 1


# -- modem and microphone --------------------------------------------------------------------

@pytest.mark.parametrize("part, kind", [("modem", "modem"), ("microphone", "microphone")])
def test_an_unusable_part_raises_once_and_clears_when_it_works_again(world, part, kind):
    heartbeat(world, **{part: "unusable"})
    now = timezone.now()
    assert run_checks(now) == (1, 0)
    for minute in range(1, 4):  # not again every minute
        heartbeat(world, **{part: "unusable"})
        assert run_checks(now + timedelta(minutes=minute)) == (0, 0)
    event = SupervisionEvent.objects.get()
    assert event.kind == kind and event.device_id == world.device.pk
    assert notices(pk=event.pk, notice__recipient=world.association.on_call_number).count() == 1
    with translation.override("fr"):
        assert "inutilisable" in notice_text(event)
    heartbeat(world, **{part: "ok"})
    assert run_checks(now + timedelta(minutes=5)) == (0, 1)
    assert kinds() == []


# -- episodes the station reports once the server hears it again -----------------------------

def test_each_reported_episode_is_one_event_told_once_even_when_the_report_comes_again(world):
    start = timezone.now() - timedelta(hours=3)
    incidents = [
        {"id": "7c0b6f0e-0000-4000-8000-000000000001", "kind": "server_unreachable",
         "started": start.isoformat(), "ended": (start + timedelta(hours=2, minutes=5)).isoformat()},
        {"id": "7c0b6f0e-0000-4000-8000-000000000002", "kind": "alert_refused", "count": 2,
         "started": start.isoformat(), "ended": (start + timedelta(minutes=40)).isoformat()},
        {"id": "7c0b6f0e-0000-4000-8000-000000000003", "kind": "evidence_rejected", "count": 1,
         "started": start.isoformat(), "ended": start.isoformat()},
    ]
    heartbeat(world, incidents=incidents)
    heartbeat(world, incidents=incidents)  # a heartbeat sent again: nothing more
    events = {e.kind: e for e in SupervisionEvent.objects.all()}
    assert sorted(events) == ["alert_refused", "evidence_rejected", "server_unreachable"]
    outage = events["server_unreachable"]
    assert (outage.raised_at, outage.cleared_at) == (start, start + timedelta(hours=2, minutes=5))
    assert all(e.device_id == world.device.pk and e.cleared_at is not None for e in events.values())
    assert notices(notice__recipient=world.association.on_call_number).count() == 3
    with translation.override("fr"):
        texts = {kind: notice_text(e) for kind, e in events.items()}
    assert "n'a pas pu joindre le serveur" in texts["server_unreachable"] and "2 heures" in texts["server_unreachable"]
    assert "a refusé 2 alertes" in texts["alert_refused"] and "le serveur les a toutes" in texts["alert_refused"] and "Camille" in texts["alert_refused"]
    assert "1 enregistrement de preuve" in texts["evidence_rejected"]
    # The station is named by its label, never by an internal id (its number may be 1, and
    # "1:" is in every time of day past one o'clock: look for the shapes an id would take).
    assert all("station-lyon" in t and "7c0b6f0e" not in t for t in texts.values())
    assert not any(re.search(r"\b(id|pk|Device|object)\b|#\d|\(\d+\)", t) for t in texts.values())
    assert run_checks(timezone.now()) == (0, 0)  # over already: nothing to raise or clear
    r = heartbeat(world)
    assert "incidents" not in r.json()


def test_an_absent_modem_is_no_alarm(world):
    heartbeat(world, modem="absent", microphone="absent")
    assert run_checks(timezone.now()) == (0, 0)


# -- buttons ---------------------------------------------------------------------------------

def test_a_button_disconnected_longer_than_the_setting_raises_once_and_clears_when_it_returns(world, settings):
    settings.SUPERVISION_BUTTON_MINUTES = 30
    settings.SUPERVISION_SILENCE_SECONDS = 86400  # its heartbeats stop in this test's clock; not the point
    button = {"hardware_id": "AA:BB:CC:DD:EE:01", "connected": False}
    heartbeat(world, buttons=[button])
    t0 = timezone.now()
    assert run_checks(t0 + timedelta(minutes=29)) == (0, 0)
    heartbeat(world, buttons=[button])  # still dropped: counted from the first report, not from this one
    assert run_checks(t0 + timedelta(minutes=31)) == (1, 0)
    for minute in range(32, 36):
        heartbeat(world, buttons=[button])
        assert run_checks(t0 + timedelta(minutes=minute)) == (0, 0)
    event = SupervisionEvent.objects.get()
    assert event.kind == "button_lost" and event.detail == "AA:BB:CC:DD:EE:01"
    with translation.override("fr"):
        text = notice_text(event)
    assert "AA:BB:CC:DD:EE:01" in text and "30 minutes" in text and "Camille" in text
    assert notices(pk=event.pk).count() == 1

    heartbeat(world, buttons=[{**button, "connected": True}])
    assert run_checks(t0 + timedelta(minutes=40)) == (0, 1)
    # Dropped again: a new episode, counted from this new drop.
    heartbeat(world, buttons=[button])
    assert run_checks(timezone.now() + timedelta(minutes=29)) == (0, 0)
    assert run_checks(timezone.now() + timedelta(minutes=31)) == (1, 0)


def test_the_stations_own_since_counts_and_each_button_is_its_own_episode(world):
    long_ago = (timezone.now() - timedelta(hours=2)).isoformat()
    heartbeat(world, buttons=[{"hardware_id": "AA:01", "connected": False, "since": long_ago},
                              {"hardware_id": "AA:02", "connected": False, "since": long_ago},
                              {"hardware_id": "AA:03", "connected": True, "since": long_ago}])
    assert run_checks(timezone.now()) == (2, 0)
    assert sorted(SupervisionEvent.objects.values_list("detail", flat=True)) == ["AA:01", "AA:02"]
    heartbeat(world, buttons=[{"hardware_id": "AA:01", "connected": True},
                              {"hardware_id": "AA:02", "connected": False, "since": long_ago}])
    assert run_checks(timezone.now()) == (0, 1)
    assert list(SupervisionEvent.objects.filter(cleared_at__isnull=True).values_list("detail", flat=True)) == ["AA:02"]


def test_the_board_and_her_file_show_the_stations_report(world, other_world):
    long_ago = (timezone.now() - timedelta(hours=2)).isoformat()
    heartbeat(world, modem="unusable", buttons=[{"hardware_id": "AA:01", "connected": False, "since": long_ago}])
    run_checks(timezone.now())
    board = staff_client(world.staff).get(reverse("console:board_list")).content.decode()
    assert "kind-modem" in board and "kind-button_lost" in board and "AA:01" in board
    assert "data-supervision" not in staff_client(other_world.staff).get(reverse("console:board_list")).content.decode()
    html = staff_client(world.staff).get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "modem inutilisable" in html and "bouton AA:01 déconnecté" in html


# -- providers -------------------------------------------------------------------------------

@pytest.fixture
def breaker():
    health.forget()
    inner = RecordingProvider("flaky-sms", fail=[UnavailableError("down") for _ in range(3)])
    clock = [0.0]
    guarded = Guarded(inner, failures=2, open_seconds=60, clock=lambda: clock[0])
    Guarded(RecordingProvider(), failures=2, open_seconds=60, clock=lambda: clock[0])  # another one that works
    yield inner, guarded, clock
    health.forget()


def _message():
    from balise.providers.base import OutgoingMessage

    return OutgoingMessage(key="k", channel="sms", to="+33612345678", text="x", language="fr", alert_id=0,
                           alert_kind="", purpose="supervision")


def _fail(guarded):
    with pytest.raises(UnavailableError):
        guarded.send(_message())


def test_an_open_breaker_tells_each_association_once_and_clears_when_it_closes(world, other_world, breaker):
    inner, guarded, clock = breaker
    _fail(guarded)
    assert run_checks(timezone.now()) == (0, 0)  # one failure: not yet
    _fail(guarded)
    assert run_checks(timezone.now()) == (2, 0)  # open: each association told
    events = SupervisionEvent.objects.filter(kind="provider")
    assert {e.association_id for e in events} == {world.association.pk, other_world.association.pk}
    assert all(e.detail == "flaky-sms" for e in events)
    assert notices(kind="provider").count() == 2
    clock[0] = 61  # half-open: its trial fails, open again: the same episode
    _fail(guarded)
    assert run_checks(timezone.now()) == (0, 0)
    with translation.override("fr"):
        assert "flaky-sms" in notice_text(events.first())
    page = staff_client(other_world.staff).get(reverse("console:supervision")).content.decode()
    assert "flaky-sms" in page
    clock[0] = 122
    assert not inner.fail  # its errors are spent: it works again
    guarded.send(_message())  # the trial succeeds: closed
    assert run_checks(timezone.now()) == (0, 2)
    assert not SupervisionEvent.objects.filter(kind="provider", cleared_at__isnull=True).exists()


def test_a_provider_this_process_does_not_know_is_left_to_the_dispatcher_that_does(world, breaker):
    inner, guarded, clock = breaker
    _fail(guarded)
    _fail(guarded)
    assert run_checks(timezone.now()) == (1, 0)
    health.forget()  # another dispatcher process: it has not built this provider
    assert run_checks(timezone.now()) == (0, 0)
    assert SupervisionEvent.objects.get(kind="provider").cleared_at is None


# -- periodic test reminders -----------------------------------------------------------------

def _enrolled(world, days_ago: float):
    Person.objects.filter(pk=world.person.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def test_a_reminder_goes_to_her_phone_discreetly_and_her_test_is_the_result(world, settings):
    settings.SUPERVISION_TEST_DAYS = 15
    PeriodicTest.objects.create(person=world.person, phone="+33611111111")
    _enrolled(world, 14)
    assert run_checks(timezone.now()) == (0, 0)
    _enrolled(world, 15.1)
    assert run_checks(timezone.now()) == (1, 0)
    assert run_checks(timezone.now() + timedelta(minutes=1)) == (0, 0)  # one reminder, not one a minute
    reminder = SupervisionEvent.objects.get()
    assert reminder.kind == "test_reminder"
    notice = notices(pk=reminder.pk).get()
    assert notice.recipient == "+33611111111"  # her phone, not the on-call line

    Delivery.objects.exclude(purpose="supervision").delete()  # (the contacts' invitations)
    provider = RecordingProvider()
    dispatcher = Dispatcher(name="test-owner", providers=[provider], workers=2)
    try:
        drain(dispatcher)
    finally:
        dispatcher.close()
    [sms] = provider.sent
    assert sms.to == "+33611111111"
    for word in ("Balise", "alert", "alerte", "bouton", "button", "test", "supervision", "Camille"):
        assert word.lower() not in sms.text.lower()
    assert sms.text.startswith("Rappel")
    Person.objects.filter(pk=world.person.pk).update(language="en")
    assert notice_text(SupervisionEvent.objects.get()).startswith("Reminder")

    # Not on the board (not a technical alarm); on the supervision list, awaiting her test.
    board = staff_client(world.staff).get(reverse("console:board_list")).content.decode()
    assert "data-supervision" not in board
    page = staff_client(world.staff).get(reverse("console:supervision")).content.decode()
    assert "Rappel de test envoyé à Camille" in page and "en attente de son test" in page

    raise_alert(world, "test")
    assert run_checks(timezone.now()) == (0, 1)
    html = staff_client(world.staff).get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "test reçu le" in html
    page = staff_client(world.staff).get(reverse("console:supervision")).content.decode()
    assert "test reçu le" in page


def test_without_a_test_overdue_after_the_grace_and_the_next_reminder_after_a_period(world, settings):
    settings.SUPERVISION_SILENCE_SECONDS = 365 * 86400  # (months pass here: her station's silence is not this test's)
    settings.SUPERVISION_TEST_DAYS = 15
    settings.SUPERVISION_TEST_GRACE_HOURS = 48
    PeriodicTest.objects.create(person=world.person, phone="+33611111111")
    _enrolled(world, 15.01)
    t0 = timezone.now()
    assert run_checks(t0) == (1, 0)
    assert kinds() == ["test_reminder"]
    assert run_checks(t0 + timedelta(hours=47)) == (0, 0)
    assert run_checks(t0 + timedelta(hours=49)) == (1, 0)  # overdue: the on-call line is told
    assert kinds() == ["test_overdue", "test_reminder"]
    overdue = SupervisionEvent.objects.get(kind="test_overdue")
    assert notices(pk=overdue.pk).get().recipient == world.association.on_call_number
    html = staff_client(world.staff).get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "pas encore de test : en retard" in html
    # One period after the reminder it lapses (no test), and the next one goes.
    assert run_checks(t0 + timedelta(days=15, minutes=1)) == (0, 1)
    assert run_checks(t0 + timedelta(days=15, minutes=2)) == (1, 0)
    assert SupervisionEvent.objects.filter(kind="test_reminder").count() == 2
    assert Delivery.objects.filter(purpose="supervision", recipient="+33611111111").count() == 2
    html = staff_client(world.staff).get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "pas de test avant le rappel suivant" in html
    raise_alert(world, "test")  # her test clears both
    assert run_checks(timezone.now()) == (0, 2)


def test_her_own_period_and_none(world, settings):
    settings.SUPERVISION_SILENCE_SECONDS = 365 * 86400  # (months pass here: her station's silence is not this test's)
    settings.SUPERVISION_TEST_DAYS = 15
    plan = PeriodicTest.objects.create(person=world.person, phone="+33611111111", period_days=30)
    _enrolled(world, 20)
    assert run_checks(timezone.now()) == (0, 0)
    _enrolled(world, 31)
    assert run_checks(timezone.now()) == (1, 0)
    plan.period_days = 0
    plan.save()
    assert run_checks(timezone.now() + timedelta(days=30)) == (0, 1)
    assert kinds() == []


def test_her_file_sets_the_reminders_and_a_viewer_or_another_association_cannot(world, other_world):
    staff = staff_client(world.staff)
    url = reverse("console:person_tests", args=[world.person.pk])
    r = staff.post(url, {"period_days": "10", "phone": "06 11 22 33 44"})
    assert r.status_code == 302
    plan = PeriodicTest.objects.get(person=world.person)
    assert (plan.period_days, plan.phone) == (10, "+33611223344")
    html = staff.get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "tous les 10 jours" in html and "se terminant par 44" in html and "+33611223344" not in html.split(
        'id="tests"')[1].split("<form")[0]
    r = staff.post(url, {"period_days": "-1", "phone": "not a phone"})
    assert r.status_code == 400
    body = r.content.decode()
    assert 'id="id_period_days"' in body and "errorlist" in body
    assert PeriodicTest.objects.get(person=world.person).period_days == 10
    assert staff.post(url, {"period_days": "", "phone": "", "remove_phone": "on"}).status_code == 302
    plan.refresh_from_db()
    assert (plan.period_days, plan.phone) == (None, "")

    assert staff_client(other_world.staff).post(url, {"period_days": "3"}).status_code == 404
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.VIEWER)
    assert staff_client(world.staff).post(url, {"period_days": "3"}).status_code == 403
    assert PeriodicTest.objects.get(person=world.person).period_days is None


def test_messages_the_operator_reports_undelivered_twice_raise_until_one_gets_through(world):
    from balise.alerts.actions import resolve_alert
    from balise.dispatch.models import Delivery
    from balise.inbound.actions import carrier_status

    contact = world.contacts[0]

    def sms_to_her(alert, report: str) -> None:
        sms = Delivery.objects.get(alert=alert, contact=contact, channel="sms", purpose="alert")
        Delivery.objects.filter(pk=sms.pk).update(state="sent", sent_at=timezone.now())
        assert carrier_status(str(sms.pk), status=report) == "recorded"

    first = raise_alert(world, "prevention")
    sms_to_her(first, "undelivered")
    assert run_checks(timezone.now()) == (0, 0)  # once is not twice
    resolve_alert(first)
    second = raise_alert(world, "prevention")
    sms_to_her(second, "failed")
    assert run_checks(timezone.now()) == (1, 0)
    assert SupervisionEvent.objects.get().contact_id == contact.pk
    assert run_checks(timezone.now()) == (0, 0)
    resolve_alert(second)
    third = raise_alert(world, "prevention")
    sms_to_her(third, "delivered")
    assert run_checks(timezone.now()) == (0, 1)

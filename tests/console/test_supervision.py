"""Supervision (EN 50134 technical alarms), with an injected clock: each condition
raises one event per episode, with one SMS to the association's on-call line, and is
cleared when it goes away."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from balise.alerts.actions import resolve_alert
from balise.devices.models import Device
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.people.models import Person
from balise.supervision.checks import run_checks
from balise.supervision.models import SupervisionEvent
from tests.contacts.helpers import raise_alert
from tests.personas import staff_client
from tests.spine.helpers import RecordingProvider, drain

pytestmark = pytest.mark.django_db


def heartbeat(world, **body):
    api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {world.token}")
    r = api.post("/api/v1/heartbeat", json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.content


def test_a_silent_station_raises_one_event_after_the_interval_and_clears_when_it_returns(world, settings):
    t0 = timezone.now() - timedelta(hours=1)
    Device.objects.filter(pk=world.device.pk).update(last_seen_at=t0)
    silence = settings.SUPERVISION_SILENCE_SECONDS
    assert run_checks(t0 + timedelta(seconds=silence - 1)) == (0, 0)
    assert run_checks(t0 + timedelta(seconds=silence + 1)) == (1, 0)
    for minute in range(1, 6):  # not again every minute
        assert run_checks(t0 + timedelta(seconds=silence + 1 + 60 * minute)) == (0, 0)
    event = SupervisionEvent.objects.get()
    assert event.kind == "silent" and event.device_id == world.device.pk and event.cleared_at is None
    notices = Delivery.objects.filter(purpose="supervision", alert__isnull=True)
    assert [(n.pk, n.recipient) for n in notices] == [(event.notice_id, world.association.on_call_number)]

    heartbeat(world)  # it comes back
    assert run_checks(timezone.now()) == (0, 1)
    event.refresh_from_db()
    assert event.cleared_at is not None
    # A new silence is a new episode.
    assert run_checks(timezone.now() + timedelta(seconds=silence + 1)) == (1, 0)
    assert SupervisionEvent.objects.count() == 2


def test_the_notice_goes_to_the_on_call_line_through_the_outbox(world, settings):
    Device.objects.filter(pk=world.device.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    run_checks(timezone.now())
    Delivery.objects.exclude(purpose="supervision").delete()  # (the contacts' invitations)
    provider = RecordingProvider()
    dispatcher = Dispatcher(name="test-owner", providers=[provider], workers=2)
    try:
        drain(dispatcher)
        [message] = provider.sent
        assert message.to == world.association.on_call_number and message.channel == "sms"
        assert message.purpose == "supervision" and message.alert_id == 0
        assert message.text.startswith("Supervision Balise : L'appareil") and "Camille" in message.text
        notice = Delivery.objects.get(purpose="supervision")
        assert notice.state == "sent" and notice.pk == SupervisionEvent.objects.get().notice_id
        drain(dispatcher)
        assert len(provider.sent) == 1  # sent once
    finally:
        dispatcher.close()


def test_low_battery_raises_and_clears(world):
    heartbeat(world, battery_percent=12)
    assert run_checks(timezone.now()) == (1, 0)
    assert SupervisionEvent.objects.get().kind == "low_battery"
    heartbeat(world, battery_percent=12)
    assert run_checks(timezone.now()) == (0, 0)
    heartbeat(world, battery_percent=85)
    assert run_checks(timezone.now()) == (0, 1)


def test_a_contact_undelivered_twice_raises_until_a_message_gets_through(world):
    alert = raise_alert(world, "prevention")
    contact = world.contacts[0]
    rows = list(Delivery.objects.filter(alert=alert, contact=contact))
    Delivery.objects.filter(pk=rows[0].pk).update(state="failed")
    assert run_checks(timezone.now()) == (0, 0)  # once is not twice
    # Her next alerts come after the previous one is closed (a press while it is open joins it).
    resolve_alert(alert)
    second = raise_alert(world, "prevention")
    assert second.pk != alert.pk
    Delivery.objects.filter(alert=second, contact=contact).update(state="failed")
    assert run_checks(timezone.now()) == (1, 0)
    event = SupervisionEvent.objects.get()
    assert event.kind == "undelivered" and event.contact_id == contact.pk
    resolve_alert(second)
    third = raise_alert(world, "prevention")
    assert third.pk != second.pk
    Delivery.objects.filter(alert=third, contact=contact).update(state="sent")
    assert run_checks(timezone.now()) == (0, 1)


def test_an_overdue_periodic_test_raises_and_a_test_clears_it(world, settings):
    settings.SUPERVISION_SILENCE_SECONDS = 365 * 86400  # (days pass here: her station's silence is not this test's)
    now = timezone.now()
    # Without her phone on her file there is no reminder; overdue after the period and the grace.
    Person.objects.filter(pk=world.person.pk).update(created_at=now - timedelta(days=settings.SUPERVISION_TEST_DAYS, hours=1))
    assert run_checks(now) == (0, 0)
    assert run_checks(now + timedelta(hours=settings.SUPERVISION_TEST_GRACE_HOURS)) == (1, 0)
    assert SupervisionEvent.objects.get().kind == "test_overdue"
    raise_alert(world, "test")
    assert run_checks(timezone.now()) == (0, 1)


def test_the_board_shows_supervision_to_her_association_only(world, other_world):
    Device.objects.filter(pk=world.device.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    run_checks(timezone.now())
    event = SupervisionEvent.objects.get()
    mine = staff_client(world.staff).get(reverse("console:board_list")).content.decode()
    assert f'data-supervision="{event.pk}"' in mine and world.device.hardware_id in mine
    theirs = staff_client(other_world.staff).get(reverse("console:board_list")).content.decode()
    assert "data-supervision" not in theirs
    page = staff_client(world.staff).get(reverse("console:supervision")).content.decode()
    assert world.device.hardware_id in page


@pytest.mark.django_db(transaction=True)
def test_the_dispatcher_runs_the_checks_and_sends_the_notice_once(world, settings, monkeypatch):
    from balise.supervision import runner

    rounds = []

    def counted(now):
        result = run_checks(now)
        rounds.append(result)
        return result

    monkeypatch.setattr(runner, "run_checks", counted)
    settings.SUPERVISION_INTERVAL_SECONDS = 0.1
    Device.objects.filter(pk=world.device.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    provider = RecordingProvider()
    dispatcher = Dispatcher(name="supervised", providers=[provider], workers=2)
    try:
        deadline = time.monotonic() + 30
        def notices():
            return [m.to for m in provider.sent if m.purpose == "supervision"]

        while (len(rounds) < 4 or not notices()) and time.monotonic() < deadline:
            dispatcher.tick()
            time.sleep(0.05)
        assert len(rounds) >= 4 and rounds[0] == (1, 0) and set(rounds[1:]) == {(0, 0)}
        assert notices() == [world.association.on_call_number]
        assert SupervisionEvent.objects.count() == 1
    finally:
        dispatcher.close()


def test_a_station_paired_but_never_heard_from_is_silent(world, settings):
    """Installed but never started: she believes she is protected. Silent once it has been
    paired for the interval without a single heartbeat; cleared by its first one."""
    from balise.devices.models import DeviceCredential
    from balise.supervision.messages import describe

    Device.objects.filter(pk=world.device.pk).update(last_seen_at=None)
    paired = timezone.now() - timedelta(hours=1)
    DeviceCredential.objects.filter(device=world.device).update(created_at=paired)
    silence = settings.SUPERVISION_SILENCE_SECONDS
    assert run_checks(paired + timedelta(seconds=silence - 1)) == (0, 0)
    assert run_checks(timezone.now()) == (1, 0)
    event = SupervisionEvent.objects.get()
    assert event.kind == "silent" and "jamais" in describe(event)
    heartbeat(world)  # switched on at last
    assert run_checks(timezone.now()) == (0, 1)


def test_a_phones_button_disconnected_longer_than_the_setting_raises_once_and_clears_when_connected(world, settings):
    """A phone says only `button_connected`: the same "button disconnected" episode as a
    station's button, counted from the last heartbeat that saw it connected, one SMS per
    episode."""
    from balise.supervision.messages import notice_text

    settings.SUPERVISION_BUTTON_MINUTES = 30
    settings.SUPERVISION_SILENCE_SECONDS = 86400  # its heartbeats stop in this test's clock; not the point
    Device.objects.filter(pk=world.device.pk).update(kind=Device.Kind.PHONE)
    heartbeat(world, button_connected=True)
    t0 = timezone.now()
    heartbeat(world, button_connected=False)
    assert run_checks(t0 + timedelta(minutes=29)) == (0, 0)
    heartbeat(world, button_connected=False)  # still disconnected: counted from when it was last seen
    assert run_checks(t0 + timedelta(minutes=31)) == (1, 0)
    for minute in range(32, 36):  # not again every minute
        heartbeat(world, button_connected=False)
        assert run_checks(t0 + timedelta(minutes=minute)) == (0, 0)
    event = SupervisionEvent.objects.get()
    assert (event.kind, event.device_id, event.person_id) == ("button_lost", world.device.pk, world.person.pk)
    notices = Delivery.objects.filter(purpose="supervision")
    assert [(n.pk, n.recipient) for n in notices] == [(event.notice_id, world.association.on_call_number)]
    text = notice_text(event)
    assert "Camille" in text and "30 minutes" in text and "application" in text

    heartbeat(world, button_connected=True)
    assert run_checks(t0 + timedelta(minutes=40)) == (0, 1)
    heartbeat(world, battery_percent=80)  # a heartbeat that does not say: nothing starts
    assert run_checks(timezone.now() + timedelta(minutes=31)) == (0, 0)
    # Disconnected again: a new episode, counted from this new drop.
    t1 = timezone.now()
    heartbeat(world, button_connected=False)
    assert run_checks(t1 + timedelta(minutes=29)) == (0, 0)
    assert run_checks(t1 + timedelta(minutes=31)) == (1, 0)
    assert SupervisionEvent.objects.filter(kind="button_lost").count() == 2


def test_a_phone_whose_button_was_never_connected_counts_from_its_pairing(world, settings):
    from balise.devices.models import DeviceCredential

    settings.SUPERVISION_BUTTON_MINUTES = 30
    Device.objects.filter(pk=world.device.pk).update(kind=Device.Kind.PHONE)
    heartbeat(world, button_connected=False)
    assert run_checks(timezone.now()) == (0, 0)  # paired just now
    DeviceCredential.objects.filter(device=world.device).update(created_at=timezone.now() - timedelta(minutes=31))
    assert run_checks(timezone.now()) == (1, 0)
    assert SupervisionEvent.objects.get().kind == "button_lost"


def test_a_station_reporting_its_buttons_raises_no_second_episode_for_the_same_drop(world, settings):
    """A station's heartbeat carries each button (its own episodes): its overall
    `button_connected` starts no phone episode beside them."""
    settings.SUPERVISION_BUTTON_MINUTES = 30
    settings.SUPERVISION_SILENCE_SECONDS = 86400
    heartbeat(world, buttons=[{"hardware_id": "AA:01", "connected": True}])
    heartbeat(world, buttons=[{"hardware_id": "AA:01", "connected": False}])
    assert Device.objects.get(pk=world.device.pk).button_connected is False
    assert run_checks(timezone.now() + timedelta(minutes=31)) == (1, 0)
    assert SupervisionEvent.objects.get().detail == "AA:01"

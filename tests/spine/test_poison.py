"""Poison isolation: one alert whose messages cannot be built (a renderer that raises, a
location fixed in year 9999, an unknown template) must never stop the others. Its rows
are retried a bounded number of times, then set aside as failed, and the association's
on-call line is told to call the contacts herself; the dispatch loop keeps running.

The poison is put below the device API (rows written directly, the renderer patched):
the API may refuse such input, the dispatcher must survive it all the same."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.utils import formats
from django.utils import timezone as dj_timezone

from balise.alerts.actions import FixIn, create_alert
from balise.alerts.models import Alert, AlertEvent, LocationFix
from balise.dispatch import dispatcher as dispatcher_module
from balise.dispatch import messages, wakeup
from balise.dispatch.dispatcher import Dispatcher, Supervisor, run_in_thread
from balise.dispatch.messages import UNDELIVERABLE, render
from balise.dispatch.models import Delivery, DispatcherBeat, EscalationTimer
from tests.personas import another_holder
from tests.spine.helpers import RecordingProvider
from tests.spine.loopback import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)
YEAR_9999 = datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc)  # year 10000 in Paris
NOTICE_FR = "Balise : l'alerte de Camille n'a pas pu etre envoyée à ses proches. Appelez-les vous-meme."  # (GSM-7)


@pytest.fixture(autouse=True)
def quick_faults(settings):
    settings.DISPATCH_FAULT_ATTEMPTS = 3
    settings.DISPATCH_BACKOFF_BASE = 0.02
    settings.DISPATCH_BACKOFF_MAX = 0.1
    settings.DISPATCH_POLL_SECONDS = 0.05


def raise_alert(world, kind: str = "emergency") -> Alert:
    """An alert of WORLD's person (Camille), or, once hers is open, of a person of her own:
    a press while a person's alert is open joins it."""
    device = world.device
    if Alert.objects.filter(person=world.person, state__in=["open", "acknowledged"]).exists():
        device = another_holder(world, uuid.uuid4().hex[:8])[1]
    fix = FixIn(lat=45.76, lon=4.83, accuracy_m=12, recorded_at=NOW, source="gps", client_id=uuid.uuid4())
    alert, created = create_alert(device, client_id=uuid.uuid4(), kind=kind, gesture="double", fixes=[fix])
    assert created
    return alert


class Running:
    """An in-process dispatcher loop on its own thread, as in `balise serve`."""

    def __init__(self, provider: RecordingProvider | None = None):
        self.provider = provider or RecordingProvider()
        self.dispatcher = Dispatcher(name="in-process", providers=[self.provider], workers=4)

    def __enter__(self):
        self.thread = run_in_thread(self.dispatcher)
        wait_until(lambda: wakeup.local_dispatcher is self.dispatcher, 10, "the dispatcher to start")
        return self

    def __exit__(self, *exc):
        self.dispatcher.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def texts_to(self, phone: str, alert) -> list[str]:
        return [m.text for m in self.provider.sent if m.to == phone and m.alert_id == alert.pk]


def settled(alerts) -> bool:
    return not Delivery.objects.filter(alert__in=alerts, state__in=["pending", "sending"]).exists()


def check_poisoned(alert, world, running: Running, fault: str) -> None:
    """ALERT's messages were set aside after the allowed faults, the on-call line was told
    once, in French, and nothing of it reached the contacts."""
    rows = list(Delivery.objects.filter(alert=alert).exclude(template=UNDELIVERABLE))
    assert rows and {d.state for d in rows} == {"failed"}
    assert {d.faults for d in rows} == {3}
    assert all(fault in d.last_error for d in rows), [d.last_error for d in rows]
    assert all(d.attempts >= 3 and d.lease_owner == "" for d in rows)
    failed = AlertEvent.objects.filter(alert=alert, kind="delivery_failed")
    assert sorted(e.data["delivery"] for e in failed) == sorted(str(d.id) for d in rows)
    assert all(e.data["fault"] is True for e in failed)
    notice = Delivery.objects.get(alert=alert, template=UNDELIVERABLE)
    assert (notice.state, notice.purpose, notice.recipient, notice.contact_id) == (
        "sent", "notice", world.association.on_call_number, None)
    assert running.texts_to(world.association.on_call_number, alert) == [NOTICE_FR]
    assert AlertEvent.objects.filter(alert=alert, kind="on_call_notified").count() == 1
    assert not [m for m in running.provider.sent if m.alert_id == alert.pk and m.to != notice.recipient]


def check_delivered(alerts, running: Running) -> None:
    rows = Delivery.objects.filter(alert__in=alerts)
    assert rows.count() >= 4 * len(alerts)
    assert set(rows.values_list("state", "attempts", "faults")) == {("sent", 1, 0)}  # at the first attempt
    assert sorted(m.key for m in running.provider.sent if m.alert_id in {a.pk for a in alerts}) == sorted(
        str(i) for i in rows.values_list("id", flat=True))


def test_a_renderer_that_raises_for_one_alert_spares_every_other(world, other_world, monkeypatch):
    poisoned = raise_alert(world, "prevention")  # before the dispatcher runs: claimed with the others
    good_before = [raise_alert(world), raise_alert(other_world)]

    def render_or_raise(template, **kw):
        if kw["alert"].pk == poisoned.pk and template != UNDELIVERABLE:
            raise RuntimeError("a bug that only this alert reaches")
        return render(template, **kw)

    monkeypatch.setattr(dispatcher_module, "render", render_or_raise)
    with Running() as running:
        good_after = [raise_alert(other_world, "alarm")]  # handed over to the running loop at commit
        wait_until(lambda: settled([poisoned, *good_before, *good_after]) and Delivery.objects.filter(
            alert=poisoned, template=UNDELIVERABLE, state="sent").exists(), 30, "the poisoned alert set aside")
        assert running.thread.is_alive()
        check_delivered(good_before + good_after, running)
        check_poisoned(poisoned, world, running, "render: RuntimeError")
        # the loop still beats and still sends
        later = raise_alert(other_world)
        wait_until(lambda: settled([later]), 30, "an alert after the poisoned one")
        check_delivered([later], running)
        assert DispatcherBeat.objects.get(name="in-process").beat_at > dj_timezone.now() - timedelta(seconds=5)


def test_a_fix_dated_year_9999_is_sent_with_its_time_unknown(world, other_world):
    good = raise_alert(other_world)
    alert = raise_alert(world)
    LocationFix.objects.create(alert=alert, lat=45.75, lon=4.85, accuracy_m=8, recorded_at=YEAR_9999, source="gps")
    Alert.objects.filter(pk=alert.pk).update(triggered_at=YEAR_9999)
    with Running() as running:
        wait_until(lambda: settled([good, alert]), 30, "both alerts sent")
        check_delivered([good, alert], running)
    sms = [m.text for m in running.provider.sent if m.alert_id == alert.pk and m.channel == "sms"]
    french = [t for t in sms if t.startswith("BALISE: ")]  # (the one-part SMS carries no time: the page does)
    assert french and all("Camille" in t and "/s/" in t for t in french), french


def test_the_real_year_9999_fix_without_defensive_rendering_is_set_aside(world, other_world, monkeypatch):
    """The renderer as it was (local time of the fix, unguarded): the real OverflowError."""
    monkeypatch.setattr(messages, "_clock",
                        lambda fix: formats.time_format(dj_timezone.localtime(fix.recorded_at), "H:i"))
    poisoned = raise_alert(world)
    LocationFix.objects.create(alert=poisoned, lat=45.75, lon=4.85, recorded_at=YEAR_9999, source="gps")
    good = [raise_alert(other_world), raise_alert(other_world, "prevention")]
    with Running() as running:
        wait_until(lambda: settled([poisoned, *good]) and Delivery.objects.filter(
            alert=poisoned, template=UNDELIVERABLE, state="sent").exists(), 30, "the poisoned alert set aside")
        check_delivered(good, running)
        # The call reads the fix's time out and is set aside; the one-part first SMS gives
        # no time (the live page has it), so it still goes out.
        calls = Delivery.objects.filter(alert=poisoned, channel="voice").exclude(template=UNDELIVERABLE)
        assert calls and {(d.state, d.faults) for d in calls} == {("failed", 3)}
        assert all("render: OverflowError" in d.last_error for d in calls)
        texts = Delivery.objects.filter(alert=poisoned, channel="sms", purpose="alert")
        assert texts and {d.state for d in texts} == {"sent"}
        assert running.texts_to(world.association.on_call_number, poisoned) == [NOTICE_FR]


def test_a_fix_beyond_year_9999_in_utc_is_skipped_on_postgresql(world, other_world, place_names):
    """9999-12-31T20:00-14:00 is year 10000 in UTC: PostgreSQL stores it, Python cannot
    read it back (reading raises a DataError). Its alert goes out with the fix before."""
    alert = raise_alert(world)
    beyond = datetime(9999, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-14)))
    try:
        LocationFix.objects.create(alert=alert, lat=1.0, lon=2.0, recorded_at=beyond, source="gps")
        Alert.objects.filter(pk=alert.pk).update(triggered_at=beyond)
    except OverflowError:
        assert connection.vendor == "sqlite"
        pytest.skip("SQLite cannot store a time beyond year 9999 in UTC")
    with pytest.raises(Exception):
        list(LocationFix.objects.filter(alert=alert))  # what a careless reader meets
    good = raise_alert(other_world)
    with Running() as running:
        wait_until(lambda: settled([good, alert]), 30, "both alerts sent")
        check_delivered([good, alert], running)
    sms = [m.text for m in running.provider.sent if m.alert_id == alert.pk and m.channel == "sms"]
    # the last readable fix (Lyon), not the unreadable one (1.0, 2.0: the Gulf of Guinea)
    assert sms and all("Lyon" in t for t in sms), sms


def test_an_escalation_that_raises_is_set_aside_and_the_on_call_line_told(world, other_world, settings, monkeypatch):
    settings.AUDITOR_INTERVAL_SECONDS = 0.05  # the auditor must not re-arm the failed step
    poisoned, good = raise_alert(world), raise_alert(other_world)
    real_plan_for = dispatcher_module.plan_for

    def plan_or_raise(association, kind):
        if association.pk == world.association.pk:
            raise ValueError("an association plan that cannot be read")
        return real_plan_for(association, kind)

    monkeypatch.setattr(dispatcher_module, "plan_for", plan_or_raise)
    EscalationTimer.objects.filter(alert__in=[poisoned, good]).update(due_at=dj_timezone.now())
    with Running() as running:
        wait_until(lambda: EscalationTimer.objects.filter(alert=poisoned, state="failed").exists()
                   and Delivery.objects.filter(alert=poisoned, template=UNDELIVERABLE, state="sent").exists()
                   and AlertEvent.objects.filter(alert=good, kind="escalated").exists() and settled([good]),
                   30, "the failed escalation set aside, the other one escalated")
        timer = EscalationTimer.objects.get(alert=poisoned, state="failed")
        assert timer.faults == 3 and timer.step == 0
        assert AlertEvent.objects.filter(alert=poisoned, kind="escalation_fault").count() == 2
        assert AlertEvent.objects.get(alert=poisoned, kind="escalation_failed").data["error"].startswith("ValueError")
        assert running.texts_to(world.association.on_call_number, poisoned) == [NOTICE_FR]
        audits = running.dispatcher._last_audit
        wait_until(lambda: running.dispatcher._last_audit > audits, 10, "another audit")
        assert not EscalationTimer.objects.filter(alert=poisoned, state__in=["pending", "running"]).exists()
        assert not AlertEvent.objects.filter(alert=poisoned, kind="auditor_rearmed").exists()


def test_the_loop_survives_a_step_that_always_raises_and_logs_it_once(world, settings, monkeypatch, caplog):
    settings.AUDITOR_INTERVAL_SECONDS = 0  # the audit runs on every round
    calls = []

    def broken_audit(self):
        calls.append(1)
        raise KeyError("a bug in the auditor")

    monkeypatch.setattr(Dispatcher, "audit", broken_audit)
    with caplog.at_level(logging.ERROR, logger="balise.dispatch.dispatcher"), Running() as running:
        alerts = [raise_alert(world)]
        wait_until(lambda: settled(alerts), 30, "the alert sent")
        wait_until(lambda: len(calls) >= 20, 30, "twenty rounds")
        alerts.append(raise_alert(world, "prevention"))
        wait_until(lambda: settled(alerts), 30, "the next alert sent")
        check_delivered(alerts, running)
        beat = DispatcherBeat.objects.get(name="in-process").beat_at
        wait_until(lambda: DispatcherBeat.objects.get(name="in-process").beat_at > beat, 10, "a new heartbeat")
    logged = [r for r in caplog.records if "audit failed" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info[0] is KeyError


def test_a_dead_dispatcher_thread_is_replaced_by_the_supervisor(world, caplog, monkeypatch):
    made: list[Dispatcher] = []
    provider = RecordingProvider()

    def make():
        d = Dispatcher(name=f"supervised-{len(made)}", providers=[provider], workers=2)
        made.append(d)
        return d

    died = threading.Event()
    real_tick = Dispatcher.tick

    def tick_then_die(self, scan=True):
        if self is made[0] and not died.is_set():
            died.set()
            raise SystemExit("what no loop catches")
        return real_tick(self, scan)

    supervisor = Supervisor(make, check_seconds=0.05, restart_delay=0.05)
    monkeypatch.setattr(Dispatcher, "tick", tick_then_die)
    deaths = []
    monkeypatch.setattr(threading, "excepthook", deaths.append)  # (the thread's death is the point)
    with caplog.at_level(logging.ERROR, logger="balise.dispatch.dispatcher"):
        supervisor.start()
        try:
            wait_until(lambda: len(made) == 2 and wakeup.local_dispatcher is made[1], 10, "a second dispatcher")
            alert = raise_alert(world)
            wait_until(lambda: settled([alert]), 30, "the alert sent by the new dispatcher")
        finally:
            supervisor.stop()
    assert died.is_set() and supervisor.restarts == 1
    assert [d.exc_type for d in deaths] == [SystemExit]
    assert set(Delivery.objects.filter(alert=alert).values_list("state", "lease_owner")) == {("sent", "")}
    assert {m.key for m in provider.sent} == {str(i) for i in Delivery.objects.filter(alert=alert).values_list("id", flat=True)}
    assert "dispatcher thread supervised-0 died; starting a new one" in caplog.text
    assert not supervisor.thread.is_alive() and wakeup.local_dispatcher is None


# -- messages render defensively ------------------------------------------------------


@pytest.mark.parametrize("lat, lon, accuracy, recorded_at, sms, voice", [
    pytest.param(45.76, 4.83, 12.0, YEAR_9999, "à 45.7600,4.8300.",
                 "À une heure inconnue elle était", id="time-beyond-local-range"),
    pytest.param(float("nan"), 4.83, 12.0, NOW, "position encore inconnue.", "Sa position n'est pas encore connue.",
                 id="nan-latitude"),
    pytest.param(45.76, 181.0, 12.0, NOW, "position encore inconnue.", "Sa position n'est pas encore connue.",
                 id="longitude-off-the-globe"),
    pytest.param(45.76, 4.83, float("inf"), NOW, "à 45.7600,4.8300.",
                 "À 19:00 elle était", id="infinite-accuracy"),
    pytest.param(45.76, 4.83, -5.0, NOW, "à 45.7600,4.8300.", "À 19:00 elle était",
                 id="negative-accuracy"),
])
def test_out_of_range_values_render_as_unknown(world, settings, lat, lon, accuracy, recorded_at, sms, voice):
    settings.PLACE_NAMES = False
    alert = raise_alert(world)
    fix = LocationFix(alert=alert, lat=lat, lon=lon, accuracy_m=accuracy, recorded_at=recorded_at)
    text = render("alert", channel="sms", language="fr", alert=alert, contact_id=world.contacts[0].pk, fix=fix)
    assert sms in text
    spoken = render("alert", channel="voice", language="fr", alert=alert, contact_id=None, fix=fix)
    assert voice in spoken


def test_the_on_call_notice_in_both_languages(world):
    alert = raise_alert(world)
    fr = render(UNDELIVERABLE, channel="sms", language="fr", alert=alert, contact_id=None, fix=None)
    en = render(UNDELIVERABLE, channel="sms", language="en", alert=alert, contact_id=None, fix=None)
    assert fr == NOTICE_FR
    assert en == "Balise: the alert of Camille could not be sent to her contacts. Call them yourself."



def test_a_delivery_row_that_cannot_be_read_is_set_aside_alone(world, other_world):
    """A stored value Python cannot read back (year 10000 on PostgreSQL, a malformed time
    on SQLite: a month 13) in one delivery row: the batch is read again row by row, that row alone
    fails."""
    poisoned, good = raise_alert(world), raise_alert(other_world)
    row = Delivery.objects.filter(alert=poisoned).first()
    if connection.vendor == "postgresql":
        Delivery.objects.filter(pk=row.pk).update(created_at=datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-14))))
    else:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE dispatch_delivery SET created_at = '2026-13-45 99:99:99' WHERE id = %s", [row.pk.hex])
    with pytest.raises(Exception):
        Delivery.objects.get(pk=row.pk)
    with Running() as running:
        wait_until(lambda: settled([poisoned, good]) and Delivery.objects.filter(
            alert=poisoned, template=UNDELIVERABLE, state="sent").exists(), 30, "the unreadable row set aside")
        check_delivered([good], running)
        others = Delivery.objects.filter(alert=poisoned).exclude(pk=row.pk).exclude(template=UNDELIVERABLE)
        assert set(others.values_list("state", "faults")) == {("sent", 0)}
        state, faults, error = Delivery.objects.filter(pk=row.pk).values_list("state", "faults", "last_error").get()
        assert (state, faults) == ("failed", 3) and error.startswith("read: ")
        assert running.texts_to(world.association.on_call_number, poisoned) == [NOTICE_FR]

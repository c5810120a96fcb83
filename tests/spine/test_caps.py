"""Caps that never silence a real alert.

A press while an alert of the same person is open joins it (a stronger gesture escalates
it) instead of fanning out again; beyond a device's or an association's budget, alerts
are still stored and reach the on-call line, not the contacts, and the association is
told once."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from balise.alerts import budget
from balise.alerts.actions import FixIn, acknowledge_alert, cancel_alert, create_alert, resolve_alert
from balise.alerts.models import Alert, AlertBudget, AlertEvent, JoinedPress
from balise.dispatch import wakeup
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.messages import render
from balise.dispatch.models import Delivery, EscalationTimer
from tests.personas import DURESS_PIN, another_holder, make_world
from tests.spine.helpers import RecordingProvider

ON_CALL = "+33472000000"


def fix_body() -> dict:
    return {"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
            "recorded_at": "2026-11-24T18:00:00Z", "source": "gps"}


def press(client, world, kind: str = "prevention", client_id: str | None = None, token: str | None = None):
    body = {"client_id": client_id or str(uuid.uuid4()), "kind": kind, "gesture": "single",
            "triggered_at": "2026-11-24T18:00:00Z", "fixes": [fix_body()]}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token or world.token}"}
    r = client.post("/api/v1/alerts", data=json.dumps(body), content_type="application/json", **auth)
    return body["client_id"], r


def raise_alert(device, kind: str = "prevention") -> Alert:
    fix = FixIn(lat=45.76, lon=4.83, recorded_at=timezone.now(), client_id=uuid.uuid4())
    alert, _ = create_alert(device, client_id=uuid.uuid4(), kind=kind, gesture="single", fixes=[fix])
    return alert


def sends(alert) -> list[tuple[str, str]]:
    return sorted(Delivery.objects.filter(alert=alert).values_list("recipient", "channel"))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(budget, "clock", fake)
    return fake


# -- joining -------------------------------------------------------------------------


def test_presses_during_an_open_alert_join_it(client, world):
    first, r1 = press(client, world)
    assert r1.status_code == 201 and r1.json()["joined_to"] is None
    alert = Alert.objects.get(client_id=first)
    before = sends(alert)
    assert len(before) == 5
    second, r2 = press(client, world)
    assert r2.status_code == 201
    body = r2.json()
    assert body["client_id"] == second and body["joined_to"] == first and body["id"] == alert.pk
    assert body["state"] == "open" and body["fixes"] == 2  # her new position is on the alert
    assert Alert.objects.count() == 1 and sends(alert) == before  # no new message to anyone
    joined = AlertEvent.objects.get(alert=alert, kind="press_joined")
    assert joined.data["client_id"] == second and joined.data["escalates"] is False
    # A retry of the joined press gets the same answer, and joins nothing twice.
    _, retry = press(client, world, client_id=second)
    assert retry.status_code == 200 and retry.json() == body
    assert JoinedPress.objects.count() == 1 and AlertEvent.objects.filter(kind="press_joined").count() == 1
    # The device knows the alert by its own client id from then on.
    auth = world.auth
    assert client.get(f"/api/v1/alerts/{second}", **auth).json()["joined_to"] == first
    added = client.post(f"/api/v1/alerts/{second}/fixes", data=json.dumps({"fixes": [fix_body()]}),
                        content_type="application/json", **auth)
    assert added.status_code == 200 and alert.fixes.count() == 3
    listed = client.post("/api/v1/heartbeat", data="{}", content_type="application/json", **auth).json()
    assert sorted(a["client_id"] for a in listed["open_alerts"]) == sorted([first, second])
    # Once the alert is closed, the next press raises a new one.
    resolve_alert(alert)
    assert client.post("/api/v1/heartbeat", data="{}", content_type="application/json", **auth).json()[
        "open_alerts"] == []
    third, r3 = press(client, world)
    assert r3.status_code == 201 and r3.json()["joined_to"] is None and Alert.objects.count() == 2
    # ...and a late retry of the joined press still answers what it answered.
    _, late = press(client, world, client_id=second)
    assert late.status_code == 200 and late.json()["joined_to"] == first and Alert.objects.count() == 2


def test_a_joined_client_id_of_another_device_is_a_conflict(client, world, other_world):
    press(client, world)
    second, _ = press(client, world)
    _, stolen = press(client, other_world, client_id=second)
    assert stolen.status_code == 409 and stolen.json()["error"] == "client_id_conflict"


def test_a_stronger_press_escalates_the_alert_once(client, world):
    first, _ = press(client, world, "prevention")
    alert = Alert.objects.get(client_id=first)
    acknowledge_alert(alert, channel="page", contact=world.contacts[0])
    phones = [c.phone for c in world.contacts]
    _, r = press(client, world, "emergency")
    assert r.status_code == 201 and r.json()["kind"] == "emergency"
    alert.refresh_from_db()
    # Reopened (she said it got worse), the emergency chain from its start, fenced from the old one.
    assert alert.kind == "emergency" and alert.state == "open" and alert.epoch == 2 and alert.escalation_step == 0
    assert EscalationTimer.objects.filter(alert=alert, epoch=alert.epoch, step=0, state="pending").count() == 1
    # The emergency plan adds the call to her first contact; the SMS went out already.
    assert sends(alert) == sorted([(p, "sms") for p in phones] + [(phones[0], "voice")])
    press(client, world, "emergency")
    press(client, world, "prevention")
    assert len(sends(alert)) == 6  # the calls were added once
    _, r = press(client, world, "alarm")
    alert.refresh_from_db()
    assert r.json()["kind"] == "alarm" and alert.kind == "alarm" and alert.record
    assert sends(alert) == sorted([(p, "sms") for p in phones] + [(p, "voice") for p in phones] + [(ON_CALL, "voice"), (ON_CALL, "sms")])
    assert [e.data["to"] for e in alert.events.filter(kind="escalated_by_press")] == ["emergency", "alarm"]
    assert JoinedPress.objects.filter(alert=alert, escalated=True).count() == 2


def test_a_test_never_joins_a_real_alert_nor_a_real_one_a_test(client, world):
    test_id, _ = press(client, world, "test")
    real_id, r = press(client, world, "prevention")
    assert r.status_code == 201 and r.json()["joined_to"] is None
    real = Alert.objects.get(client_id=real_id)
    assert len(sends(real)) == 5
    other_test, r = press(client, world, "test")
    assert r.json()["joined_to"] == test_id  # a test joins the open test
    _, r = press(client, world, "alarm")
    assert r.json()["joined_to"] == real_id  # and a real press the real alert, never the test
    assert Alert.objects.get(client_id=test_id).kind == "test"
    resolve_alert(Alert.objects.get(client_id=test_id))
    _, r = press(client, world, "test")
    assert r.status_code == 201 and r.json()["joined_to"] is None and r.json()["kind"] == "test"


def test_an_alert_under_duress_stays_under_duress(client, world):
    first, _ = press(client, world, "prevention")
    alert = Alert.objects.get(client_id=first)
    cancel_alert(alert, DURESS_PIN)
    second, r = press(client, world, "alarm")
    alert.refresh_from_db()
    assert alert.duress and alert.state == "open" and alert.kind == "prevention"
    # To the device the duress alert was cancelled: the press raises a new alert, exactly
    # as after a real cancel (joining it would answer "cancelled", which a cancel never does).
    assert r.status_code == 201 and r.json()["state"] == "open" and r.json()["joined_to"] is None
    raised = Alert.objects.get(client_id=second)
    assert raised.pk != alert.pk and raised.kind == "alarm" and not raised.duress


# -- budgets -------------------------------------------------------------------------


def test_a_looping_device_reaches_contacts_only_within_its_budget(world, settings, clock):
    settings.ALERT_BUDGET_DEVICE = (10, 5)
    for _ in range(200):
        alert = raise_alert(world.device)
        resolve_alert(alert)  # closed each time, so that the next one does not join it
    assert Alert.objects.count() == 200  # every one is stored
    to_contacts = Delivery.objects.filter(contact__isnull=False)
    assert to_contacts.count() == 10 * 5
    assert Alert.objects.filter(over_budget=True).count() == 190
    on_call = Delivery.objects.filter(recipient=ON_CALL, purpose="alert", channel="sms")
    assert on_call.count() == 190 and set(on_call.values_list("alert__over_budget", flat=True)) == {True}
    notices = Delivery.objects.filter(recipient=ON_CALL, purpose="notice")
    assert list(notices.values_list("template", flat=True)) == ["over_budget_device"]
    assert AlertEvent.objects.filter(kind="over_budget", data__capped=True).count() == 190
    text = render("over_budget_device", channel="sms", language="fr", alert=notices.get().alert, contact_id=None,
                  fix=None)
    assert "Camille" in text
    # No escalation chain to the contacts for an alert over budget, and the auditor agrees.
    capped = Alert.objects.filter(over_budget=True).first()
    assert not EscalationTimer.objects.filter(alert=capped).exists()


def test_an_escalation_over_budget_reaches_only_the_on_call_line(world, settings, clock):
    settings.ALERT_BUDGET_DEVICE = (1, 1)
    resolve_alert(raise_alert(world.device))
    capped = raise_alert(world.device)
    assert capped.over_budget and sends(capped) == [(ON_CALL, "sms"), (ON_CALL, "sms")]  # the alert, the notice
    alert, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="alarm")
    assert alert.pk == capped.pk
    assert sends(capped) == [(ON_CALL, "sms"), (ON_CALL, "sms"), (ON_CALL, "voice")]


def test_the_budget_refills_with_time_and_a_new_episode_is_told_again(world, settings, clock):
    settings.ALERT_BUDGET_DEVICE = (2, 3600)  # two at once, then one a second
    outcomes = []
    for advance in (0, 0, 0, 0, 1, 0, 0.5, 10, 0, 0):
        clock.now += advance
        alert = raise_alert(world.device)
        outcomes.append(alert.over_budget)
        resolve_alert(alert)
    assert outcomes == [False, False, True, True, False, True, True, False, False, True]
    notices = Delivery.objects.filter(purpose="notice", template="over_budget_device")
    # One per episode: the second starts after the bucket was full again.
    assert notices.count() == 2


def test_the_association_budget_holds_across_its_devices(world, settings, clock):
    settings.ALERT_BUDGET_ASSOCIATION = (3, 1)
    devices = [world.device] + [another_holder(world, str(i))[1] for i in range(4)]
    alerts = [raise_alert(d) for d in devices]
    assert [a.over_budget for a in alerts] == [False, False, False, True, True]
    assert list(Delivery.objects.filter(purpose="notice").values_list("template", flat=True)) == [
        "over_budget_association"]
    # The other association has a budget of its own.
    other = make_world("oise")
    assert not raise_alert(other.device).over_budget


def test_without_an_on_call_line_an_alert_over_budget_still_reaches_the_contacts(world, settings, clock):
    settings.ALERT_BUDGET_DEVICE = (1, 1)
    world.association.on_call_number = ""
    world.association.save()
    world.device.refresh_from_db()
    resolve_alert(raise_alert(world.device))
    alert = raise_alert(world.device)
    assert not alert.over_budget and len(sends(alert)) == 5
    assert AlertEvent.objects.filter(alert=alert, kind="over_budget", data__capped=False).exists()


@pytest.mark.django_db(transaction=True)
def test_the_bucket_holds_across_connections(settings, clock):
    """Two connections taking from one device's bucket at once (PostgreSQL row locks)."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    world = make_world("lyon")
    settings.ALERT_BUDGET_DEVICE = (15, 1)
    barrier = threading.Barrier(2)
    results: list[bool] = []
    lock = threading.Lock()

    def taker() -> None:
        try:
            barrier.wait()
            for _ in range(20):
                with transaction.atomic():
                    verdict = budget.take(world.device)
                with lock:
                    results.append(verdict.within)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=taker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 40 and results.count(True) == 15
    assert AlertBudget.objects.get(key=f"device:{world.device.pk}").tokens < 1


def test_raising_an_alert_stays_a_few_statements(world):
    """The latency-critical path: one read (a retry, an alert to join), the two budget
    upserts (INSERT … ON CONFLICT DO UPDATE) in a transaction of their own (the association's row is not held during the
    alert's), then the alert's transaction, its messages handed to this process's
    dispatcher (balise serve; its loop does not run here)."""
    resolve_alert(raise_alert(world.device))  # the buckets exist, as they do in steady state
    device = type(world.device).objects.select_related("holder", "association").get(pk=world.device.pk)
    here = Dispatcher(name="here", providers=[RecordingProvider()], workers=1)
    here.accepting = True
    wakeup.local_dispatcher = here
    try:
        with CaptureQueriesContext(connection) as ctx:
            raise_alert(device)
    finally:
        wakeup.local_dispatcher = None
        here.close()
    # (PostgreSQL writes the read, a UNION of the retry and the alert to join, as "(SELECT ...)")
    statements = [q["sql"].lstrip("(").split()[0] for q in ctx.captured_queries
                  if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "NOTIFY"))]
    # the read; the two buckets; the alert, its fix; the contacts, the short links of the
    # SMS (in this transaction rather than in one of the dispatcher's own: issue 16),
    # deliveries, events, timer
    assert statements == ["SELECT", "INSERT", "INSERT", "INSERT", "INSERT", "SELECT", "INSERT", "INSERT", "INSERT",
                          "INSERT"]


def test_a_new_device_s_first_alert_takes_its_token_in_one_statement(world, settings):
    """No bucket yet: the upsert creates it full and takes one token at once (it was an
    UPDATE that found nothing, an INSERT, and the UPDATE again)."""
    settings.ALERT_BUDGET_DEVICE = (3, 1)
    with CaptureQueriesContext(connection) as ctx:
        verdict = budget.take(world.device)
    assert verdict.within
    assert [q["sql"].split()[0] for q in ctx.captured_queries] == ["INSERT", "INSERT"]  # device, association
    assert AlertBudget.objects.get(key=f"device:{world.device.pk}").tokens == 2

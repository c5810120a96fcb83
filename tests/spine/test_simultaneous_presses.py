"""Two first presses of one person at the same instant (her phone's button and her home
station, or a retry racing a new press) raise ONE alert, which the other joins: the
database holds at most one alert a press joins per person (balise.alerts.models.JOINABLE),
and create_alert joins the alert whose insert won."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from balise.alerts import actions, budget
from balise.alerts.actions import cancel_alert, create_alert, resolve_alert
from balise.alerts.models import Alert, AlertBudget, AlertEvent, JoinedPress
from balise.devices.actions import issue_token
from balise.devices.models import Device
from balise.dispatch.models import Delivery, EscalationTimer
from tests.personas import DURESS_PIN


def her_button(world) -> tuple[Device, str]:
    """A second device of the world's person (device, token): her phone's button."""
    device = Device.objects.create(association=world.association, holder=world.person, kind=Device.Kind.FLIC,
                                   hardware_id=f"flic-{world.association.slug}", status=Device.Status.ASSIGNED)
    return device, issue_token(device)


def burst(bucket: str) -> float:
    return (settings.ALERT_BUDGET_DEVICE if bucket == "device" else settings.ALERT_BUDGET_ASSOCIATION)[0]


def fix() -> actions.FixIn:
    return actions.FixIn(lat=45.76, lon=4.83, recorded_at=timezone.now(), client_id=uuid.uuid4())


def body(kind: str = "prevention") -> dict:
    return {"client_id": str(uuid.uuid4()), "kind": kind, "gesture": "single", "triggered_at": "2026-11-24T18:00:00Z",
            "fixes": [{"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
                       "recorded_at": "2026-11-24T18:00:00Z", "source": "gps"}]}


def racing_reads(monkeypatch, parties: int) -> None:
    """Every press reads (no open alert of hers yet) before any of them writes: the
    instant at which the race happens, made certain rather than hoped for."""
    barrier = threading.Barrier(parties, timeout=30)
    first = threading.local()
    lookup = actions._lookup

    def read_then_wait(device, press):
        found = lookup(device, press)
        if not getattr(first, "done", False):
            first.done = True
            barrier.wait()
        return found

    monkeypatch.setattr(actions, "_lookup", read_then_wait)


def at_once(work, count: int) -> list:
    """WORK(i) for i in range(COUNT), each in a thread with its own database connection."""
    def run(i: int):
        try:
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def one_alert_both_presses(alert: Alert, client_ids: list[str], escalated: bool = False) -> None:
    assert Alert.objects.count() == 1
    joined = JoinedPress.objects.get()
    assert joined.alert_id == alert.pk
    assert sorted([str(alert.client_id), str(joined.client_id)]) == sorted(client_ids)
    assert AlertEvent.objects.filter(alert=alert, kind="press_joined").count() == 1
    assert alert.fixes.count() == 2  # both positions
    # One set of messages (an emergency adds its call to the first contact), one escalation plan.
    assert Delivery.objects.filter(alert=alert, purpose="alert").count() == 5 + escalated
    assert EscalationTimer.objects.filter(alert=alert, epoch=Alert.objects.get(pk=alert.pk).epoch).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_devices_pressing_at_once_get_one_alert(world, monkeypatch):
    """Her two devices post their first press at the same instant, each on its own
    connection (PostgreSQL: the second insert waits on the first's and is refused)."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    _button, button_token = her_button(world)
    racing_reads(monkeypatch, 2)
    calls = [(world.token, body()), (button_token, body())]

    def post(i: int) -> tuple[int, dict]:
        token, payload = calls[i]
        r = Client().post("/api/v1/alerts", data=json.dumps(payload), content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {token}")
        return r.status_code, r.json()

    answers = at_once(post, len(calls))
    alert = Alert.objects.get()
    # Each device answered as a press that raised or joined the alert: 201, the same alert,
    # under its own client id; the one that joined names the other's.
    assert [a[0] for a in answers] == [201, 201], answers
    assert {a[1]["id"] for a in answers} == {alert.pk}
    assert [a[1]["client_id"] for a in answers] == [c[1]["client_id"] for c in calls]
    assert sorted(str(a[1]["joined_to"]) for a in answers) == sorted(["None", str(alert.client_id)])
    one_alert_both_presses(alert, [c[1]["client_id"] for c in calls])
    # The joining press took no token from the budgets: the association's bucket paid once.
    assert AlertBudget.objects.get(key=f"association:{world.association.pk}").tokens == pytest.approx(
        burst("association") - 1, abs=0.01)  # (the refill of the test's few seconds)


@pytest.mark.django_db(transaction=True)
def test_a_retry_and_a_new_press_racing_each_other(world, monkeypatch):
    """The station retries its first press while her button presses: still one alert,
    one joined press, and the retry answers what its first attempt answered."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    button, _token = her_button(world)
    station_press = uuid.uuid4()
    racing_reads(monkeypatch, 3)
    calls = [(world.device, station_press), (world.device, station_press), (button, uuid.uuid4())]

    def press(i: int) -> tuple[Alert, bool]:
        device, client_id = calls[i]
        return create_alert(device, client_id=client_id, kind="prevention")

    results = at_once(press, len(calls))
    alert = Alert.objects.get()
    assert {a.pk for a, _created in results} == {alert.pk}
    assert JoinedPress.objects.count() == 1 and AlertEvent.objects.filter(kind="created").count() == 1
    # The station's two attempts answer alike: the second is a retry.
    assert sorted(created for _a, created in results[:2]) == [False, True]


# -- the constraint ------------------------------------------------------------------


def test_the_database_refuses_a_second_open_alert_of_one_person(world):
    first, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="prevention")

    def insert(kind: str = "emergency") -> Alert:
        with transaction.atomic():
            return Alert.objects.create(client_id=uuid.uuid4(), device=world.device, person=world.person,
                                        association=world.association, kind=kind)

    with pytest.raises(IntegrityError):
        insert()
    # Acknowledged is still going on: still refused.
    actions.acknowledge_alert(first, channel="page", contact=world.contacts[0])
    with pytest.raises(IntegrityError):
        insert()
    # A test goes beside a real alert, but one test at a time.
    insert("test")
    with pytest.raises(IntegrityError):
        insert("test")
    # Under duress, the alert goes on for her contacts but is no longer joined: a new one goes beside it.
    cancel_alert(Alert.objects.get(pk=first.pk), DURESS_PIN)
    second = insert()
    with pytest.raises(IntegrityError):
        insert()
    resolve_alert(second)
    insert()
    assert Alert.objects.filter(state__in=["open", "acknowledged"]).count() == 3


def test_a_press_refused_by_the_database_joins_the_alert_that_won(client, world, monkeypatch):
    """Any database: her button's press raises its alert between the station press's read
    and its insert; the station's insert is refused, and it joins the button's alert."""
    fixed = 1_800_000_000.0
    monkeypatch.setattr(budget, "clock", lambda: fixed)
    button, _token = her_button(world)
    lookup = actions._lookup
    raced = []

    def read_then_lose(device, press):
        found = lookup(device, press)
        if not raced:
            raced.append(None)  # (its own read comes through here too)
            raced[0], _created = create_alert(button, client_id=uuid.uuid4(), kind="prevention", fixes=[fix()])
        return found

    monkeypatch.setattr(actions, "_lookup", read_then_lose)
    station = body("emergency")
    r = client.post("/api/v1/alerts", data=json.dumps(station), content_type="application/json", **world.auth)
    # The station is answered as any press that joins: 201, the alert's id, its own client id.
    alert = raced[0]
    assert r.status_code == 201, r.content
    assert (r.json()["id"], r.json()["client_id"], r.json()["joined_to"]) == (
        alert.pk, station["client_id"], str(alert.client_id))
    station_press = uuid.UUID(station["client_id"])
    one_alert_both_presses(alert, [str(alert.client_id), str(station_press)], escalated=True)
    # The stronger gesture escalated the alert it joined.
    alert.refresh_from_db()
    assert alert.kind == "emergency" and JoinedPress.objects.get().escalated
    # The refused insert gave its token back: a press that joins costs none.
    tokens = dict(AlertBudget.objects.values_list("key", "tokens"))
    assert tokens[f"device:{world.device.pk}"] == burst("device")
    assert tokens[f"device:{button.pk}"] == burst("device") - 1
    assert tokens[f"association:{world.association.pk}"] == burst("association") - 1
    # A retry of the station's press answers the same.
    again, created = create_alert(world.device, client_id=station_press, kind="emergency")
    assert again.pk == alert.pk and not created


def test_a_press_whose_alert_went_under_duress_meanwhile_raises_its_own(world, monkeypatch):
    """The alert read as open is cancelled under duress before the press locks it: to her
    device it was cancelled, so the press raises a new alert rather than joining it."""
    first, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="prevention")
    lookup = actions._lookup

    def read_then_duress(device, press):
        found = lookup(device, press)
        if found[1] is not None and not found[1].duress:
            cancel_alert(Alert.objects.get(pk=found[1].pk), DURESS_PIN)
        return found

    monkeypatch.setattr(actions, "_lookup", read_then_duress)
    alert, created = create_alert(world.device, client_id=uuid.uuid4(), kind="alarm")
    assert created and alert.pk != first.pk and alert.kind == "alarm"
    assert not JoinedPress.objects.exists()


# -- the migration -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_open_alert_going_and_presses_join_the_newest(world):
    """Several joinable alerts of one person already in the database (raised by the race,
    or before presses joined): the constraint is built, none of them is closed, the older
    ones are superseded, and a press joins the newest one, as it did before."""
    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)
        return executor.loader.project_state(target).apps

    old = migrate([("alerts", "0004_labels")])
    Old = old.get_model("alerts", "Alert")

    def row(kind: str, **fields):
        return Old.objects.create(client_id=uuid.uuid4(), device_id=world.device.pk, person_id=world.person.pk,
                                  association_id=world.association.pk, kind=kind, **fields).pk

    oldest, older, newest = row("prevention"), row("emergency", state="acknowledged"), row("prevention")
    test_old, test_new = row("test"), row("test")
    duress, resolved = row("alarm", duress=True), row("alarm", state="resolved")
    try:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        rows = {a.pk: a for a in Alert.objects.all()}
        assert {pk for pk, a in rows.items() if a.superseded} == {oldest, older, test_old}
        assert [rows[pk].state for pk in (oldest, older, newest, test_old, test_new)] == [
            "open", "acknowledged", "open", "open", "open"]  # nothing closed
        assert not rows[duress].superseded and not rows[resolved].superseded
        alert, created = create_alert(world.device, client_id=uuid.uuid4(), kind="prevention")
        assert alert.pk == newest and created
        test, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="test")
        assert test.pk == test_new
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


# -- through real servers ------------------------------------------------------------


@pytest.fixture
def servers(procs):
    started = [procs.serve(wait=False) for _ in range(2)]
    for s in started:
        s.wait_ready()
    return [s.base for s in started]


@pytest.mark.django_db(transaction=True)
def test_her_two_devices_through_two_servers_get_one_alert(servers, world):
    """Any database: her station and her button post at once to two `balise serve`
    processes, round after round; each round is one alert, both answered with it."""
    from tests.spine.test_idempotency_concurrency import post_all_at_once

    _button, button_token = her_button(world)
    for _ in range(4):
        calls = [(world.token, body()), (button_token, body())]
        responses = post_all_at_once(servers, calls)
        alert = Alert.objects.get(state="open")
        assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
        assert {r.json()["id"] for r in responses} == {alert.pk}
        assert JoinedPress.objects.filter(alert=alert).count() == 1
        assert Delivery.objects.filter(alert=alert, purpose="alert").count() == 5
        resolve_alert(alert)
    assert Alert.objects.count() == 4

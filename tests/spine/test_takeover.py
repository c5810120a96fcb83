"""A dead process's work is taken over in seconds, not when its leases expire: a live
dispatcher claims the deliveries and escalation timers leased to a dispatcher whose
heartbeat is older than BALISE_DISPATCH_TAKEOVER_SECONDS, fenced (the lease changes
hands in one UPDATE; the old owner's late outcome is ignored) and with the same
idempotency keys. Leases are set long (120 s) so that what is seen is a takeover, not an
expiry. A live dispatcher's leases, and those of an owner that never beat, are left."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from balise.alerts.models import Alert, AlertEvent
from balise.dispatch import leases
from balise.dispatch.dispatcher import Dispatcher, Outcome
from balise.dispatch.models import Delivery, DispatcherBeat, EscalationTimer
from tests.spine.helpers import RecordingProvider
from tests.spine.loopback import Reply, wait_until
from tests.spine.test_dispatch_faults import all_sent, delivery_ids, raise_alert, webhook_env

pytestmark = pytest.mark.django_db(transaction=True)

LONG_LEASE = 120


def held(n, key, body):
    return Reply(hold=True)


def check_taken_over(alerts, ids, dead_sink, survivor_sink, survivor_name) -> None:
    """Each delivery: first attempt with the dead process (never answered to it), second
    with the survivor, same key; one outcome recorded, by the survivor."""
    assert Counter(dead_sink.keys()) == Counter({i: 1 for i in ids})
    assert Counter(survivor_sink.keys()) == Counter({i: 1 for i in ids})
    rows = Delivery.objects.filter(alert__in=alerts)
    assert set(rows.values_list("state", "attempts", "lease_owner", "faults")) == {("sent", 2, "", 0)}
    assert all(h.body["id"] == h.key for h in survivor_sink.snapshot())
    sent = AlertEvent.objects.filter(alert__in=alerts, kind="delivery_sent")
    assert Counter(e.data["delivery"] for e in sent) == Counter({i: 1 for i in ids})


def wait_beats(name: str, seconds: float) -> None:
    """Until NAME's heartbeat has moved SECONDS past now (it stays alive that long)."""
    until = timezone.now() + timedelta(seconds=seconds)
    wait_until(lambda: DispatcherBeat.objects.get(name=name).beat_at >= until, seconds + 30, f"{name} to beat on")


def test_sigkill_of_balise_dispatch_its_leases_are_taken_over_in_seconds(procs, sinks, world, capsys):
    dead_sink, survivor_sink = sinks(held), sinks()
    doomed = procs.dispatch(**webhook_env(dead_sink.url, BALISE_DISPATCH_LEASE_SECONDS=LONG_LEASE,
                                          BALISE_PROVIDER_TIMEOUT=LONG_LEASE))
    alerts = [raise_alert(world), raise_alert(world, "prevention")]
    ids = delivery_ids(alerts)
    dead_sink.wait_for_hits(len(ids))  # every delivery is with the provider, leased to the doomed process
    survivor = procs.dispatch(**webhook_env(survivor_sink.url, BALISE_DISPATCH_LEASE_SECONDS=LONG_LEASE))
    # Both alive for longer than the takeover delay: a live dispatcher's leases stay with it.
    wait_beats(survivor.name, 6)
    assert set(Delivery.objects.filter(alert__in=alerts).values_list("state", "lease_owner")) == {
        ("sending", doomed.name)}
    assert survivor_sink.keys() == []

    killed = time.monotonic()
    doomed.kill()
    dead_sink.release()  # the held requests now answer a dead client
    all_sent(alerts, timeout=LONG_LEASE / 2, procs_alive=[survivor])
    took = time.monotonic() - killed
    with capsys.disabled():
        print(f"\n[takeover] balise dispatch SIGKILLed with {len(ids)} leased deliveries: all sent by the other "
              f"dispatcher {took:.2f} s later (lease {LONG_LEASE} s)")
    check_taken_over(alerts, ids, dead_sink, survivor_sink, survivor.name)
    assert "took over" in survivor.output()


def test_sigkill_of_balise_serve_right_after_a_burst_its_hand_overs_are_taken_over(procs, sinks, world, capsys):
    """`balise serve` leases the messages of the alerts it accepts to its own dispatcher,
    in the alerts' transaction: killed right after, those leases are taken over."""
    dead_sink, survivor_sink = sinks(held), sinks()
    survivor = procs.dispatch(**webhook_env(survivor_sink.url, BALISE_DISPATCH_LEASE_SECONDS=LONG_LEASE))
    server = procs.serve(dispatcher=True, **webhook_env(dead_sink.url, BALISE_DISPATCH_LEASE_SECONDS=LONG_LEASE,
                                                        BALISE_PROVIDER_TIMEOUT=LONG_LEASE))
    headers = {"Authorization": f"Bearer {world.token}"}
    accepted = []
    for kind in ("emergency", "prevention", "emergency", "alarm"):
        body = {"client_id": str(uuid.uuid4()), "kind": kind, "gesture": "double"}
        r = httpx.post(f"{server.base}/api/v1/alerts", json=body, headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        accepted.append(r.json()["id"])
    alerts = list(Alert.objects.filter(pk__in=accepted))
    ids = delivery_ids(alerts)
    assert len(ids) >= 15
    dead_sink.wait_for_hits(len(ids))
    owners = set(Delivery.objects.filter(alert__in=alerts).values_list("lease_owner", flat=True))
    assert len(owners) == 1 and owners != {survivor.name}  # all handed over to serve's own dispatcher
    assert survivor_sink.keys() == []

    killed = time.monotonic()
    server.kill()
    dead_sink.release()
    all_sent(alerts, timeout=LONG_LEASE / 2, procs_alive=[survivor])
    took = time.monotonic() - killed
    with capsys.disabled():
        print(f"\n[takeover] balise serve SIGKILLed right after accepting {len(alerts)} alerts ({len(ids)} "
              f"deliveries leased to it): all sent by a balise dispatch {took:.2f} s later (lease {LONG_LEASE} s)")
    check_taken_over(alerts, ids, dead_sink, survivor_sink, survivor.name)


# -- who is taken over, in-process ---------------------------------------------------


def beat(name: str, age: float) -> None:
    now = timezone.now()
    DispatcherBeat.objects.update_or_create(name=name, defaults={"started_at": now - timedelta(hours=1),
                                                                "beat_at": now - timedelta(seconds=age)})


def lease(alert, owner: str) -> None:
    Delivery.objects.filter(alert=alert).update(state="sending", lease_owner=owner, attempts=1,
                                                lease_until=timezone.now() + timedelta(seconds=LONG_LEASE))


@pytest.mark.parametrize("owner_beat, taken", [
    pytest.param(0.5, False, id="alive"),
    pytest.param(None, False, id="never-beat-lease-running"),
    pytest.param(10, True, id="silent-for-10s"),
])
def test_who_is_taken_over(world, settings, owner_beat, taken):
    settings.DISPATCH_LEASE_SECONDS = LONG_LEASE
    alert = raise_alert(world)
    lease(alert, "other")
    if owner_beat is not None:
        beat("other", owner_beat)
    provider = RecordingProvider()
    survivor = Dispatcher(name="survivor", providers=[provider], workers=4)
    try:
        survivor.tick()
        wait_until(lambda: survivor.tick() is not None and not survivor.in_flight, 10, "the sends recorded")
    finally:
        survivor._shutdown()
    rows = Delivery.objects.filter(alert=alert)
    if taken:
        assert set(rows.values_list("state", "attempts", "provider")) == {("sent", 2, "recording")}
        assert sorted(m.key for m in provider.sent) == sorted(str(i) for i in rows.values_list("id", flat=True))
    else:
        assert set(rows.values_list("state", "lease_owner")) == {("sending", "other")} and provider.sent == []


def test_the_old_owners_late_outcome_is_ignored(world, settings):
    settings.DISPATCH_LEASE_SECONDS = LONG_LEASE
    alert = raise_alert(world)
    lease(alert, "old")
    beat("old", 10)
    rows = list(Delivery.objects.filter(alert=alert))
    survivor = Dispatcher(name="survivor", providers=[RecordingProvider()], workers=4)
    try:
        jobs, claimed = survivor.claim_deliveries(100)
    finally:
        survivor._shutdown()
    assert claimed == len(rows) and {j.delivery_id for j in jobs} == {d.id for d in rows}
    assert set(Delivery.objects.filter(alert=alert).values_list("lease_owner", "attempts")) == {("survivor", 2)}
    # the old owner comes back from the dead with outcomes: nothing is written
    late = [(j.delivery_id, 1, Outcome(j, ok=True, provider="old-provider", provider_ref="x")) for j in jobs]
    assert leases.record_outcomes(Delivery, "old", late, timezone.now()) == {}
    assert set(Delivery.objects.filter(alert=alert).values_list("state", "lease_owner", "provider")) == {
        ("sending", "survivor", "")}


def test_an_escalation_timer_of_a_dead_dispatcher_is_fired_by_another(world, settings):
    settings.DISPATCH_LEASE_SECONDS = LONG_LEASE
    alert = raise_alert(world)
    Delivery.objects.filter(alert=alert).update(state="sent")
    timer = EscalationTimer.objects.get(alert=alert, state="pending")
    EscalationTimer.objects.filter(pk=timer.pk).update(
        state="running", lease_owner="old", due_at=timezone.now(),
        lease_until=timezone.now() + timedelta(seconds=LONG_LEASE))
    survivor = Dispatcher(name="survivor", providers=[RecordingProvider()], workers=4)
    try:
        beat("old", 0.5)
        assert survivor.run_due_timers() == 0  # alive: left alone
        beat("old", 10)
        assert survivor.run_due_timers() == 1
    finally:
        survivor._shutdown()
    assert EscalationTimer.objects.get(pk=timer.pk).state == "fired"
    assert AlertEvent.objects.filter(alert=alert, kind="escalated").exists()


def test_a_stopped_dispatcher_gives_its_leases_up_at_once(world, settings):
    settings.DISPATCH_LEASE_SECONDS = LONG_LEASE
    stopping = Dispatcher(name="stopping", providers=[RecordingProvider()], workers=1)
    stopping.beat()
    alert = raise_alert(world)
    lease(alert, "stopping")  # (say its last outcomes could not be recorded)
    stopping._shutdown()
    assert leases.dead_owners(timezone.now(), "survivor") == ["stopping"]

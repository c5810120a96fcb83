"""The dispatcher under real faults: a `balise dispatch` process killed with SIGKILL in
the middle of sending, two dispatchers sharing one database, providers that fail in
every way and recover, and database connections cut under a running dispatcher.

Everything is real: subprocesses, signals, HTTP on loopback, the test database."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timezone

import httpx
import pytest
from django.db import connection

from balise.alerts.actions import FixIn, create_alert
from balise.alerts.models import Alert, AlertEvent
from balise.dispatch.models import Delivery
from tests.personas import another_holder
from tests.spine.loopback import OK, Reply, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_pool():
    """Tests here cut PostgreSQL backends, and earlier tests' threads may keep pooled
    connections: each test starts with a new pool (a PoolTimeout was seen otherwise)."""
    if connection.vendor == "postgresql" and hasattr(connection, "close_pool"):
        connection.close()
        connection.close_pool()
    yield

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


def raise_alert(world, kind: str = "emergency") -> Alert:
    """An alert of a person of her own: a press while a person's alert is open joins it."""
    _person, device, _token = another_holder(world, uuid.uuid4().hex[:8])
    fix = FixIn(lat=45.76, lon=4.83, accuracy_m=12, recorded_at=NOW, source="gps", client_id=uuid.uuid4())
    alert, created = create_alert(device, client_id=uuid.uuid4(), kind=kind, gesture="double", fixes=[fix])
    assert created
    return alert


def delivery_ids(alerts) -> set[str]:
    return {str(i) for i in Delivery.objects.filter(alert__in=alerts).values_list("id", flat=True)}


def all_sent(alerts, timeout: float = 30.0, procs_alive=()) -> None:
    def done():
        for p in procs_alive:
            p.check_alive()
        return not Delivery.objects.filter(alert__in=alerts).exclude(state=Delivery.State.SENT).exists()

    try:
        wait_until(done, timeout, "every delivery to be sent", interval=0.05)
    except AssertionError:
        left = list(Delivery.objects.filter(alert__in=alerts).exclude(state="sent").values_list("state", "last_error"))
        raise AssertionError(f"not sent: {left}") from None


def webhook_env(*urls: str, **more) -> dict:
    env = {"BALISE_PROVIDERS": ",".join("webhook" if i == 0 else f"webhook{i + 1}" for i in range(len(urls)))}
    for i, url in enumerate(urls):
        env["BALISE_WEBHOOK_URL" if i == 0 else f"BALISE_WEBHOOK{i + 1}_URL"] = url
    env.update(more)
    return env


# -- a dispatcher killed mid-send -----------------------------------------------------


def test_sigkill_mid_send_then_restart_delivers_everything_with_the_same_keys(procs, sinks, world):
    sink = sinks(lambda n, key, body: Reply(hold=True))  # every request hangs: the kill lands mid-send
    env = webhook_env(sink.url, BALISE_PROVIDER_TIMEOUT=60, BALISE_DISPATCH_LEASE_SECONDS=2)
    first = procs.dispatch(**env)
    alerts = [raise_alert(world), raise_alert(world, "prevention")]
    ids = delivery_ids(alerts)
    assert len(ids) >= 10
    sink.wait_for_hits(len(ids))
    assert set(sink.keys()) == ids
    assert Delivery.objects.filter(alert__in=alerts, state="sending", lease_owner=first.name).count() == len(ids)

    first.kill()
    sink.script = lambda n, key, body: OK
    sink.release()  # the held requests now answer a dead client
    second = procs.dispatch(**env)
    all_sent(alerts, procs_alive=[second])

    hits = sink.snapshot()
    keys = Counter(h.key for h in hits)
    assert set(keys) == ids, "a request carried a key that is not a delivery id"
    assert all(h.body["id"] == h.key for h in hits)
    assert all(count >= 2 for count in keys.values()), "a delivery was not re-sent after the crash"
    first_attempts = {}
    for h in hits:
        first_attempts.setdefault(h.key, h)
    assert all(h.reply.hold for h in first_attempts.values())  # the first attempt of each was the killed one
    for d in Delivery.objects.filter(alert__in=alerts):
        assert d.attempts >= 2 and d.lease_owner == "" and d.provider == "webhook"
    # one outcome recorded per delivery, by the dispatcher that lived
    sent_events = Counter(e.data["delivery"] for e in AlertEvent.objects.filter(alert__in=alerts, kind="delivery_sent"))
    assert sent_events == Counter({i: 1 for i in ids})


# -- two dispatchers on one database --------------------------------------------------


def test_two_dispatchers_send_each_delivery_exactly_once(procs, sinks, world):
    slow = lambda n, key, body: Reply(delay=0.01)  # noqa: E731 - sends overlap, claims contend
    sink_a, sink_b = sinks(slow), sinks(slow)
    a = procs.dispatch(wait=False, workers=4, **webhook_env(sink_a.url))
    b = procs.dispatch(wait=False, workers=4, **webhook_env(sink_b.url))
    a.wait_ready()
    b.wait_ready()
    alerts = [raise_alert(world) for _ in range(25)]
    ids = delivery_ids(alerts)
    assert len(ids) >= 150
    all_sent(alerts, procs_alive=[a, b])

    keys = Counter(sink_a.keys() + sink_b.keys())
    assert set(keys) == ids
    twice = {k: c for k, c in keys.items() if c > 1}
    taken = [line for p in (a, b) for line in p.output().splitlines() if "took over" in line or "error" in line.lower()]
    assert not twice, f"{len(twice)} deliveries were sent more than once; {taken}"
    assert sink_a.keys() and sink_b.keys(), "one dispatcher did all the work: nothing was shared"
    for d in Delivery.objects.filter(alert__in=alerts):
        assert d.attempts == 1
        assert str(d.id) in (sink_a.keys() if d.provider_ref.startswith(f"sink-{sink_a.port}-") else sink_b.keys())


# -- providers that fail and recover ---------------------------------------------------


def fail_first(count: int, reply: Reply):
    return lambda n, key, body: reply if n < count else OK


@pytest.mark.parametrize(
    "primary, secondary",
    [
        # the first provider answers 500 for a while: the second takes over at once
        pytest.param(fail_first(8, Reply(status=500)), fail_first(0, OK), id="http500-then-failover"),
        # the first times out (the answer comes too late), the second is down (503), then both recover
        pytest.param(fail_first(6, Reply(delay=1.5)), fail_first(10, Reply(status=503)), id="timeout-and-503"),
        # the first drops connections without answering, the second is rate-limited
        pytest.param(fail_first(12, Reply(drop=True)), fail_first(12, Reply(status=429)), id="drop-and-429"),
    ],
)
def test_failing_providers_recover_and_everything_is_delivered(procs, sinks, world, primary, secondary):
    one, two = sinks(primary), sinks(secondary)
    d = procs.dispatch(**webhook_env(one.url, two.url, BALISE_PROVIDER_TIMEOUT=0.5, BALISE_DISPATCH_BACKOFF_BASE=0.05,
                                     BALISE_DISPATCH_BACKOFF_MAX=0.3))
    alerts = [raise_alert(world), raise_alert(world, "alarm")]
    ids = delivery_ids(alerts)
    all_sent(alerts, procs_alive=[d])
    check_delivered_by_who_said_so(alerts, ids, {"webhook": one, "webhook2": two})


def check_delivered_by_who_said_so(alerts, ids, sinks_by_provider) -> None:
    seen = set()
    for sink in sinks_by_provider.values():
        for h in sink.snapshot():
            assert h.key in ids and h.body["id"] == h.key
            seen.add(h.key)
    assert seen == ids
    for d in Delivery.objects.filter(alert__in=alerts):
        sink = sinks_by_provider[d.provider]
        answered = [h for h in sink.snapshot() if h.key == str(d.id) and h.answered and h.reply.status == 200]
        assert answered, f"{d.provider} never took delivery {d.id} it is recorded as sent by"


def test_refused_connection_then_recovery_on_the_same_port(procs, sinks, world):
    """The first provider's port has nobody listening, the second answers 500: nothing
    can be sent. Then the first comes up: every delivery goes out through it."""
    port = free_port()
    broken = sinks(lambda n, key, body: Reply(status=500))
    d = procs.dispatch(**webhook_env(f"http://127.0.0.1:{port}/", broken.url, BALISE_PROVIDER_TIMEOUT=0.5,
                                     BALISE_DISPATCH_BACKOFF_BASE=0.05, BALISE_DISPATCH_BACKOFF_MAX=0.3))
    alerts = [raise_alert(world)]
    ids = delivery_ids(alerts)
    broken.wait_for_hits(2 * len(ids))  # every delivery has failed on both providers at least twice
    assert not Delivery.objects.filter(alert__in=alerts, state__in=["sent", "failed"]).exists()
    assert Delivery.objects.filter(alert__in=alerts, attempts__gte=2).count() == len(ids)
    recovered = sinks(port=port)
    all_sent(alerts, procs_alive=[d])
    assert {str(x) for x in Delivery.objects.filter(alert__in=alerts).values_list("id", flat=True)} == ids
    assert set(Delivery.objects.filter(alert__in=alerts).values_list("provider", flat=True)) == {"webhook"}
    assert set(recovered.keys()) == ids


# -- database connections cut under a running dispatcher ------------------------------


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="cuts PostgreSQL backends (pg_terminate_backend)")
def test_dispatcher_survives_its_database_connections_being_cut_mid_send(procs, sinks, world):
    """The connections die while messages are with the provider: their outcomes must
    still be recorded once the dispatcher reconnects, not left to a lease expiry (and a
    second send) much later."""
    sink = sinks(lambda n, key, body: Reply(hold=True))
    d = procs.dispatch(**webhook_env(sink.url, BALISE_DISPATCH_LEASE_SECONDS=300, BALISE_PROVIDER_TIMEOUT=60,
                                     BALISE_DISPATCH_POLL_SECONDS=5))
    before = [raise_alert(world)]
    sink.wait_for_hits(len(delivery_ids(before)))
    assert terminate_other_backends() >= 2  # the dispatcher's connection and its LISTEN connection
    sink.script = lambda n, key, body: OK
    sink.release()
    all_sent(before, procs_alive=[d])
    after = [raise_alert(world)]
    all_sent(after, procs_alive=[d])
    assert Counter(sink.keys()) == Counter({i: 1 for i in delivery_ids(before + after)})


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="cuts PostgreSQL backends (pg_terminate_backend)")
def test_server_accepts_alerts_after_its_database_connections_are_cut(procs, sinks, world):
    sink = sinks()
    server = procs.serve(dispatcher=True, **webhook_env(sink.url, BALISE_DISPATCH_LEASE_SECONDS=300))
    body = {"client_id": str(uuid.uuid4()), "kind": "prevention", "gesture": "single"}
    headers = {"Authorization": f"Bearer {world.token}"}
    assert httpx.post(f"{server.base}/api/v1/alerts", json=body, headers=headers, timeout=30).status_code == 201
    assert terminate_other_backends() >= 2
    body = {"client_id": str(uuid.uuid4()), "kind": "prevention", "gesture": "single"}
    r = httpx.post(f"{server.base}/api/v1/alerts", json=body, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    try:
        all_sent(list(Alert.objects.all()), procs_alive=[server])
    except AssertionError:
        print(server.output())
        raise


# -- a dispatcher whose beat is late re-reads its lease before sending -------------------


def test_a_dispatcher_whose_beat_is_late_does_not_send_what_was_taken_over(world, settings):
    """Its beat thread starved past the takeover delay, another dispatcher took its lease:
    the message is not sent a second time from here. With a fresh beat, no read at all."""
    from datetime import timedelta

    from django.utils import timezone as dj_timezone

    from balise.dispatch.dispatcher import Dispatcher
    from tests.spine.helpers import RecordingProvider

    alert = raise_alert(world)
    row = Delivery.objects.filter(alert=alert).first()
    provider = RecordingProvider()
    late = Dispatcher(name="late", providers=[provider], workers=1)
    job = late._job(row, None)
    Delivery.objects.filter(pk=row.pk).update(state="sending", lease_owner="the-taker")
    late.beat_at = dj_timezone.now() - timedelta(seconds=settings.DISPATCH_TAKEOVER_SECONDS)
    asyncio.run(late._send(job))
    assert provider.sent == [] and late.outcomes.get_nowait().error == "lease taken over before sending"
    Delivery.objects.filter(pk=row.pk).update(lease_owner="late")
    asyncio.run(late._send(job))
    assert [m.key for m in provider.sent] == [str(row.pk)]
    late.close()

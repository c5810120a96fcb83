"""The durable queue and its delivery to a device API server on loopback."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from balise_station.api import DeviceApi, Outcome, classify
from balise_station.delivery import Backoff, Sender
from balise_station.outbox import Outbox
from station_fakes import FakeDeviceApi, TOKEN, wait_for


def fix(i: int = 0) -> dict:
    return {"id": str(uuid.uuid4()), "lat": 48.85 + i / 1e4, "lon": 2.35, "accuracy_m": 10.0,
            "recorded_at": "2026-01-01T00:00:00.000Z", "source": "fixed"}


def new_alert(outbox: Outbox, kind: str = "prevention") -> str:
    cid = str(uuid.uuid4())
    outbox.add_alert(cid, kind, "single", "2026-01-01T00:00:00.000Z", [fix()])
    return cid


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.OK), (201, Outcome.OK), (400, Outcome.PERMANENT), (401, Outcome.PERMANENT),
    (404, Outcome.PERMANENT), (409, Outcome.PERMANENT), (413, Outcome.PERMANENT), (422, Outcome.PERMANENT),
    (408, Outcome.RETRY), (429, Outcome.RETRY), (500, Outcome.RETRY), (502, Outcome.RETRY), (503, Outcome.RETRY),
])
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(0.5, 8.0)
    assert [b.delay(n, 0.0) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [b.delay(n, 0.999999) for n in range(6)] == pytest.approx([0.5, 1, 2, 4, 8, 8], rel=1e-5)
    assert b.delay(10_000, 0.5) == 6.0


def test_outbox_survives_a_restart(tmp_path) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob, "alarm")
    ob.add_fix(cid, fix(1))
    ob.put_heartbeat({"button_connected": True})
    ob.put_heartbeat({"button_connected": False})  # replaces the first one
    ob.close()
    ob2 = Outbox(tmp_path / "q.sqlite3")
    row = ob2.alert(cid)
    assert row is not None and row.kind == "alarm" and row.state == "pending"
    assert ob2.counts() == {"alerts_pending": 1, "alerts_refused": 0, "alerts_open": 0, "fixes_pending": 1,
                            "heartbeat_pending": 1, "evidence_pending": 0, "evidence_rejected": 0,
                            "recordings": 0, "dropped": 0}
    assert ob2.heartbeat()[0] == {"button_connected": False}
    assert (tmp_path / "q.sqlite3").stat().st_mode & 0o077 == 0


def run_sender(ob: Outbox, server: FakeDeviceApi, body, **kw):
    async def main():
        api = DeviceApi(server.url, TOKEN, timeout_s=2)
        sender = Sender(ob, api, **kw)
        tasks = [asyncio.create_task(sender.run_alerts()), asyncio.create_task(sender.run_background())]
        try:
            return await body(sender)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.aclose()
    return asyncio.run(main())




def test_alert_and_its_fixes_are_delivered_once(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob)
    extra = [fix(i) for i in range(3)]
    for f in extra:
        ob.add_fix(cid, f)

    async def body(sender: Sender):
        sender.kick()
        await wait_for(lambda: ob.counts()["fixes_pending"] == 0)

    run_sender(ob, device_api, body)
    assert list(device_api.alerts) == [cid]
    assert len(device_api.fixes[cid]) == 4
    assert ob.alert(cid).state == "delivered"


def test_server_errors_are_retried_with_the_same_client_id(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob)
    device_api.fail["/api/v1/alerts"] = [503, 500, 429]

    async def body(sender: Sender):
        await wait_for(lambda: ob.alert(cid).state == "delivered")

    run_sender(ob, device_api, body, alert_backoff=Backoff(0.01, 0.05))
    posted = device_api.posts("/api/v1/alerts")
    assert len(posted) == 4 and {p["client_id"] for p in posted} == {cid}
    assert len(device_api.alerts) == 1


def test_a_lost_reply_does_not_make_two_alerts(tmp_path, device_api: FakeDeviceApi) -> None:
    """The server got the alert but the reply was lost: the retry is a replay (200), not a new alert."""
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob)
    device_api.delay_s = 2.5  # longer than the client's timeout

    async def body(sender: Sender):
        await wait_for(lambda: ob.alert(cid).attempts >= 1)
        device_api.delay_s = 0
        await wait_for(lambda: ob.alert(cid).state == "delivered")

    run_sender(ob, device_api, body, alert_backoff=Backoff(0.01, 0.05))
    assert len(device_api.alerts) == 1
    assert len(device_api.posts("/api/v1/alerts")) >= 2


def test_a_refused_alert_is_never_dropped(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob, kind="bogus")

    async def body(sender: Sender):
        await wait_for(lambda: ob.counts()["alerts_refused"] == 1)

    run_sender(ob, device_api, body)
    row = ob.alert(cid)
    assert row.state == "pending" and row.last_error == "refused: HTTP 422 validation"
    assert ob.dropped() == []
    first, second = device_api.posts("/api/v1/alerts")
    assert first["fixes"] and second["fixes"] == [] and second["triggered_at"] is None, \
        "sent again with only what the server cannot refuse"


def test_an_alert_with_a_wrong_clock_goes_without_its_times(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = str(uuid.uuid4())
    ob.add_alert(cid, "alarm", "long", "1970-01-01T00:00:42.000Z", [dict(fix(), recorded_at="1970-01-01T00:00:41.000Z")])

    async def body(sender: Sender):
        await wait_for(lambda: ob.alert(cid).state == "delivered")

    run_sender(ob, device_api, body)
    assert device_api.alerts[cid]["kind"] == "alarm" and device_api.alerts[cid]["fixes"] == []


def test_a_refused_token_keeps_the_queue_until_the_station_is_paired_again(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cids = [new_alert(ob, "emergency"), new_alert(ob, "alarm")]

    async def refused():
        api = DeviceApi(device_api.url, "revoked-token", timeout_s=2)
        sender = Sender(ob, api)
        task = asyncio.create_task(sender.run_alerts())
        try:
            await wait_for(lambda: ob.counts()["alerts_refused"] == 2)
            return sender.token_refused
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.aclose()

    assert asyncio.run(refused()) is True
    assert device_api.alerts == {} and ob.dropped() == []
    assert all(ob.alert(c).next_attempt_ts > 0 for c in cids)
    assert ob.retry_refused() == 2  # what a start after re-pairing does

    async def body(sender: Sender):
        await wait_for(lambda: ob.counts()["alerts_pending"] == 0)
        return sender.token_refused

    assert run_sender(ob, device_api, body) is False
    assert sorted(device_api.alerts) == sorted(cids)
    assert len(device_api.posts("/api/v1/alerts")) == 2 + 2, "each refused once, then delivered once"


def test_offline_for_a_while_then_everything_goes(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    device_api.stop()
    cids = [new_alert(ob) for _ in range(3)]
    ob.put_heartbeat({"button_connected": True, "station_version": "0.1.0"})

    async def body(sender: Sender):
        await wait_for(lambda: all(ob.alert(c).attempts >= 3 for c in cids))
        assert sender.server_reachable is False
        device_api.start()
        await wait_for(lambda: ob.counts()["alerts_pending"] == 0 and ob.heartbeat() is None)

    run_sender(ob, device_api, body, alert_backoff=Backoff(0.01, 0.1), background_backoff=Backoff(0.01, 0.1))
    assert sorted(device_api.alerts) == sorted(cids)
    assert len(device_api.heartbeats) == 1


def test_fixes_of_a_closed_alert_stop(tmp_path, device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob)

    async def body(sender: Sender):
        await wait_for(lambda: ob.alert(cid).state == "delivered")
        device_api.closed.add(cid)
        ob.add_fix(cid, fix(5))
        sender.kick()
        await wait_for(lambda: ob.alert(cid).closed)

    run_sender(ob, device_api, body)
    assert ob.counts()["fixes_pending"] == 0
    assert ob.dropped() == []  # quietly: a duress cancel gets the same 409 (its fixes are kept)


def test_bad_token_is_permanent(tmp_path, device_api: FakeDeviceApi) -> None:
    async def main():
        api = DeviceApi(device_api.url, "wrong")
        try:
            return await api.contacts()
        finally:
            await api.aclose()
    result = asyncio.run(main())
    assert (result.outcome, result.status, result.error) == (Outcome.PERMANENT, 401, "HTTP 401 unauthorized")


def test_fixes_refused_for_the_token_are_kept_until_the_station_is_paired_again(tmp_path,
                                                                                 device_api: FakeDeviceApi) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    cid = new_alert(ob)
    run_sender(ob, device_api, lambda sender: wait_for(lambda: ob.alert(cid).state == "delivered"))
    ob.add_fix(cid, fix(7))

    async def refused():
        api = DeviceApi(device_api.url, "revoked-token", timeout_s=2)
        sender = Sender(ob, api)
        task = asyncio.create_task(sender.run_background())
        try:
            await wait_for(lambda: len(device_api.posts(f"/api/v1/alerts/{cid}/fixes")) >= 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.aclose()

    asyncio.run(refused())
    assert ob.counts()["fixes_pending"] == 1 and ob.dropped() == [], "kept, not dropped"
    ob.retry_refused()
    run_sender(ob, device_api, lambda sender: wait_for(lambda: ob.counts()["fixes_pending"] == 0))
    assert ob.dropped() == []

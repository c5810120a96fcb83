"""Incidents the server hears of once it is reachable again: an outage (start, end), the
alerts it refused, the evidence records it refused. One episode each, however many
retries it took; in every heartbeat until one is taken, then never again."""

from __future__ import annotations

import time

from balise_station.outbox import Outbox
from station_fakes import FakeDeviceApi, TOKEN, wait_for
from test_station import run_station, write_config


def reported(api: FakeDeviceApi) -> list[dict]:
    with api.lock:
        return [i for hb in api.heartbeats for i in hb.get("incidents", [])]


def test_an_outage_and_refused_alerts_reach_the_server_once_each_when_it_is_back(tmp_path,
                                                                               device_api: FakeDeviceApi) -> None:
    offset = [0.0]
    cfg = write_config(tmp_path, device_api.url)
    cfg.write_text(cfg.read_text().replace("timeout_s = 1\n", "timeout_s = 1\ncheck_interval_s = 1\n"))

    async def body(station):
        await wait_for(lambda: device_api.heartbeats and station.sender.server_reachable)
        # a blip shorter than a minute: not worth an SMS to the on-call line
        device_api.fail["/api/v1/"] = [503] * 100_000
        await wait_for(lambda: station.sender.server_reachable is False)
        offset[0] += 30
        device_api.fail.clear()
        await wait_for(lambda: station.sender.server_reachable)
        # an outage of two minutes, many failed attempts: one episode
        device_api.fail["/api/v1/"] = [503] * 100_000
        await wait_for(lambda: station.sender.server_reachable is False)
        down = time.time() + offset[0]
        offset[0] += 120
        device_api.fail.clear()
        await wait_for(lambda: [i["kind"] for i in reported(device_api)] == ["server_unreachable"], timeout=10)
        # the token refused for a while: the alert waits (retried), one episode for it
        device_api.tokens = set()
        cid = station.raise_alert("prevention", "single")
        await wait_for(lambda: (a := station.outbox.alert(cid)) is not None and a.attempts >= 2, timeout=10)
        device_api.tokens = {TOKEN}
        await wait_for(lambda: cid in device_api.alerts, timeout=20)
        await wait_for(lambda: len(reported(device_api)) == 2, timeout=10)
        beats = len(device_api.heartbeats)
        station._heartbeat_now.set()
        await wait_for(lambda: len(device_api.heartbeats) > beats, timeout=10)
        return down

    down = run_station(cfg, body, wall=lambda: time.time() + offset[0])
    outage, refused = reported(device_api)
    assert (outage["kind"], refused["kind"], refused["count"]) == ("server_unreachable", "alert_refused", 1)
    assert outage["started"][:16] == time.strftime("%Y-%m-%dT%H:%M", time.gmtime(down))
    started, ended = (time.mktime(time.strptime(outage[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("started", "ended"))
    assert 120 <= ended - started < 130
    assert len({i["id"] for i in reported(device_api)}) == 2, "each once: the next heartbeats no longer carry them"


def test_evidence_refusals_make_one_episode_until_reported(tmp_path) -> None:
    now = [1_800_000_000.0]
    outbox = Outbox(tmp_path / "queue.db", clock=lambda: now[0])
    outbox.evidence_session_started("s", "a")
    for seq in range(3):
        outbox.put_evidence("s", seq, "segment", {"n": seq})
    for row in outbox.evidence()[:2]:
        outbox.evidence_rejected(row.id, 422, "invalid")
        outbox.evidence_rejected(row.id, 422, "invalid")  # the same record again: counted once
    [episode] = outbox.incidents_to_report(ending=("evidence_rejected",))
    assert (episode["kind"], episode["count"], episode["ended_ts"]) == ("evidence_rejected", 2, now[0])
    assert outbox.incidents_to_report() == [episode], "until the server has it"
    outbox.incidents_reported([episode["id"]])
    now[0] += 60
    outbox.evidence_rejected(outbox.evidence()[0].id, 422, "invalid")
    [later] = outbox.incidents_to_report(ending=("evidence_rejected",))
    assert later["id"] != episode["id"] and later["count"] == 1

"""One recording per station: a second alarm joins the open session, a restart opens one
session for every alarm still open, and the duress PIN never stops the recording, the
fixes, or makes a sound."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from balise_evidence import crypto
from balise_evidence.audio import GeneratedMicrophone
from balise_station.config import EvidenceConfig
from balise_station.outbox import Outbox
from balise_station.recording import MicrophoneChoice, Recordings
from station_fakes import FakeDeviceApi, wait_for
from test_station import run_station, write_config

SEAL = crypto.SealKey.generate()
DEVICE = crypto.DeviceKey.generate()


def recordings(tmp_path, wall) -> tuple[Recordings, Outbox]:
    outbox = Outbox(tmp_path / "queue.db")
    mic = MicrophoneChoice("generated", lambda: GeneratedMicrophone(seconds=None, seed=3), simulated=True)
    recs = Recordings(outbox, EvidenceConfig(microphone="generated", max_duration_s=60, segment_seconds=1), mic,
                      lambda: DEVICE, lambda: SEAL.public_pem, wall=wall, sleep=lambda s: time.sleep(min(s, 0.005)))
    return recs, outbox


def closes(outbox: Outbox) -> list[dict]:
    rows = outbox._query("SELECT body FROM evidence WHERE kind = 'close'", ())
    return [json.loads(r["body"])["header"] for r in rows]


def wait(predicate, timeout: float = 20.0) -> None:
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        done.wait(0.01)


def test_a_second_alarm_joins_the_open_recording(tmp_path) -> None:
    now = [1000.0]
    recs, outbox = recordings(tmp_path, lambda: now[0])
    first = recs.start("alert-1", now[0])
    second = recs.start("alert-2", now[0] + 30)
    assert first is not None and first == second
    assert recs.active() == {"alert-1": first, "alert-2": first} and recs.sessions() == [first]
    assert [s["session"] for s in outbox.evidence_sessions()] == [first]
    recs.stop("alert-1", "alert-closed")  # the other alert still needs it
    wait(lambda: outbox.evidence_sessions()[0]["records"] >= 3)
    assert recs.sessions() == [first] and not closes(outbox)
    # the deadline is the later alarm's: past the first one's, it still records
    now[0] = 1000.0 + 61
    assert recs.sessions() == [first]
    now[0] = 1000.0 + 91
    wait(lambda: not recs.sessions())
    assert [c["reason"] for c in closes(outbox)] == ["max-duration"]


def test_the_last_alert_closing_stops_it_and_a_new_alarm_opens_a_new_one(tmp_path) -> None:
    now = [1000.0]
    recs, outbox = recordings(tmp_path, lambda: now[0])
    first = recs.start("alert-1", now[0])
    recs.start("alert-2", now[0])
    recs.stop("alert-2", "alert-closed")
    recs.stop("alert-1", "alert-closed")
    wait(lambda: not recs.sessions())
    assert [c["reason"] for c in closes(outbox)] == ["alert-closed"]
    again = recs.start("alert-3", now[0])
    assert again not in (None, first)
    recs.stop_all("shutdown")
    recs.join(10)


def test_a_restart_opens_one_session_for_every_open_alarm(tmp_path) -> None:
    """Seven alarms open across a restart make one recording, not seven."""
    now = [1000.0]
    recs, outbox = recordings(tmp_path, lambda: now[0])
    sessions = {recs.start(f"alert-{i}", now[0] + i) for i in range(7)}
    assert len(sessions) == 1
    recs.stop_all("shutdown")
    recs.join(10)
    restarted, outbox = recordings(tmp_path, lambda: now[0])
    assert outbox.evidence_interrupted() == []  # it had closed properly
    after = {restarted.start(f"alert-{i}", now[0] + i) for i in range(7)}
    assert len(after) == 1 and len(outbox.evidence_sessions()) == 2
    restarted.stop_all("shutdown")
    restarted.join(10)


class DuressApi(FakeDeviceApi):
    """Like the server: an alert cancelled under duress leaves open_alerts and is listed,
    for the station alone, in quiet_alerts."""

    def __init__(self) -> None:
        self.duress: set[str] = set()
        super().__init__()

    def _route(self, method, path, body):
        status, reply = super()._route(method, path, body)
        if path.rstrip("/").endswith("/heartbeat") and status == 200:
            reply["open_alerts"] = [a for a in reply["open_alerts"] if a["client_id"] not in self.duress]
            reply["quiet_alerts"] = sorted(self.duress)
        return status, reply


def test_the_duress_pin_silences_the_siren_but_never_stops_recording_or_fixes(tmp_path) -> None:
    api = DuressApi()
    try:
        cfg = write_config(tmp_path, api.url, "[evidence]\nmicrophone = \"none\"\n")
        cfg.write_text(cfg.read_text().replace("[alerts]\n", "[alerts]\nopen_check_interval_s = 1\n"))

        async def body(station):
            stopped: list[str] = []
            station.recordings.stop = lambda cid, reason: stopped.append(cid)
            cid = station.raise_alert("alarm", "long")
            await wait_for(lambda: len(api.posts(f"/api/v1/alerts/{cid}/fixes")) >= 1)
            assert station.siren.playing
            api.duress.add(cid)  # she typed the duress PIN: the aggressor sees a cancel
            await wait_for(lambda: not station.siren.playing, timeout=10)
            sent = len(api.posts(f"/api/v1/alerts/{cid}/fixes"))
            beats = len(api.heartbeats)
            await wait_for(lambda: len(api.heartbeats) >= beats + 2, timeout=10)
            await wait_for(lambda: len(api.posts(f"/api/v1/alerts/{cid}/fixes")) > sent, timeout=10)
            assert not station.outbox.alert(cid).closed and stopped == []

        run_station(cfg, body)
    finally:
        api.stop()

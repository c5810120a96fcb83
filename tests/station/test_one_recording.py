"""One recording per station: a second alarm joins the open session, a restart resumes
the session it cut (one for every alarm still open), and an alarm that leaves the server's open list
(cancel or duress alike) is recorded and tracked silently for the after-close window."""

from __future__ import annotations

import json
import threading
import time

from balise_evidence import crypto, hint
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
    assert restarted.recover() is None  # it had closed properly: nothing to resume
    after = {restarted.start(f"alert-{i}", now[0] + i) for i in range(7)}
    assert len(after) == 1 and len(outbox.evidence_sessions()) == 2
    restarted.stop_all("shutdown")
    restarted.join(10)


def crash_copy(outbox: Outbox, path) -> None:
    """What the disk holds if the station dies now: a consistent copy of its queue."""
    import sqlite3

    target = sqlite3.connect(path)
    with outbox._lock:
        outbox._db.backup(target)
    target.close()


def verified(records: list[dict], tmp_path) -> None:
    """Every queued record through the server's intake (in memory), exported, verified."""
    from balise_evidence import bag, verifier
    from tests.evidence.memory import MemoryServer

    server = MemoryServer(DEVICE, SEAL)
    for body in records:
        server.receive(body)
    server.access("export")
    report = verifier.verify_path(bag.build(server.export_input(), server.exporter, tmp_path / "case.zip"),
                                  server.trusted)
    assert report.status == 0, verifier.render(report)


def test_a_crash_mid_recording_resumes_the_same_session_and_it_verifies(tmp_path) -> None:
    """The station dies while recording: at the next start the alarm, still open, goes on
    in the same session (next seq, next offset, the chain unbroken), not in a new one;
    the records of both runs make one case that the verifier finds intact and complete."""
    now = [1000.0]
    recs, outbox = recordings(tmp_path, lambda: now[0])
    session = recs.start("alert-1", now[0])
    wait(lambda: outbox.evidence_sessions()[0]["records"] >= 4)
    crash_copy(outbox, tmp_path / "after-crash.db")
    recs.stop_all("shutdown")  # the first run's own thread ends; its copy is gone with the crash
    recs.join(10)

    (tmp_path / "restarted").mkdir()
    (tmp_path / "after-crash.db").rename(tmp_path / "restarted" / "queue.db")
    restarted, outbox = recordings(tmp_path / "restarted", lambda: now[0])
    queued = outbox.evidence_sessions()[0]["records"]
    assert restarted.recover() == session
    assert restarted.start("alert-1", now[0]) == session and restarted.start("alert-2", now[0]) == session
    wait(lambda: outbox.evidence_sessions()[0]["records"] >= queued + 3)
    restarted.stop("alert-1", "alert-closed")
    restarted.stop("alert-2", "alert-closed")
    restarted.join(10)
    [row] = outbox.evidence_sessions()
    assert (row["session"], row["state"], row["reason"]) == (session, "closed", "alert-closed")
    rows = outbox._query("SELECT seq, kind, body FROM evidence WHERE session = ? ORDER BY seq", (session,))
    assert [r["seq"] for r in rows] == list(range(len(rows))) == list(range(row["records"]))
    assert [r["kind"] for r in rows].count("open") == 1 and rows[-1]["kind"] == "close"
    verified([json.loads(r["body"]) for r in rows], tmp_path)


def test_a_shutdown_with_an_alarm_open_suspends_and_the_next_start_resumes_or_closes(tmp_path) -> None:
    """A shutdown while the alarm is open ends the stream without a close record; the next
    start resumes it, or, with no alarm left to record, closes it (reason shutdown)."""
    now = [1000.0]
    for resume in (True, False):
        recs, outbox = recordings(tmp_path / str(resume), lambda: now[0])
        session = recs.start("alert-1", now[0])
        wait(lambda: outbox.evidence_sessions()[0]["records"] >= 3)
        recs.stop_all("shutdown", pause=True)
        recs.join(10)
        assert outbox.evidence_sessions()[0]["state"] == "suspended" and not closes(outbox)
        restarted = Recordings(outbox, recs.cfg, recs.microphone, lambda: DEVICE, lambda: SEAL.public_pem,
                               wall=lambda: now[0], sleep=lambda s: time.sleep(min(s, 0.005)))
        assert restarted.recover() == session
        if resume:
            assert restarted.start("alert-1", now[0]) == session
            wait(lambda: outbox.evidence_sessions()[0]["records"] >= 6)
            restarted.stop("alert-1", "alert-closed")
            restarted.join(10)
        restarted.close_unresumed()
        [row] = outbox.evidence_sessions()
        assert (row["state"], row["reason"]) == ("closed", "alert-closed" if resume else "shutdown")
        assert [c["reason"] for c in closes(outbox)] == [row["reason"]]
        rows = outbox._query("SELECT body FROM evidence WHERE session = ? ORDER BY seq", (session,))
        verified([json.loads(r["body"]) for r in rows], tmp_path / str(resume))


class ServerLikeApi(FakeDeviceApi):
    """Like the server: an alert cancelled under duress leaves open_alerts as a cancelled one
    does, and its fixes get the same 409 as a closed alert's, but they are kept. Once the
    station registered its evidence key, every heartbeat reply carries the recording hint
    sealed to it, listing the alerts under duress the association has not closed."""

    SIGNER = crypto.Signer.generate()

    def __init__(self) -> None:
        self.duress: set[str] = set()
        self.resolved: set[str] = set()  # closed by the association
        self.device_public = None
        super().__init__()

    def _route(self, method, path, body):
        if path == "/api/v1/evidence/device-key":
            self.device_public = crypto.load_device_public_key(body["public_key_pem"])
            return 201, {}
        if path == "/api/v1/evidence/keys":
            return 200, {"seal_public_pem": SEAL.public_pem, "seal_fingerprint": SEAL.fingerprint,
                         "signing_public_pem": self.SIGNER.public_pem, "signing_fingerprint": self.SIGNER.fingerprint}
        if path.startswith("/api/v1/evidence/"):
            return 503, {"error": "unavailable", "retry": True}  # the records wait in the queue
        status, reply = super()._route(method, path, body)
        if path.rstrip("/").endswith("/heartbeat") and status == 200:
            reply["open_alerts"] = [a for a in reply["open_alerts"] if a["client_id"] not in self.duress]
            if self.device_public is not None:
                reply["recording_hint"] = hint.seal(self.device_public, sorted(self.duress - self.resolved))
        elif path.endswith("/fixes") and status == 200 and path.split("/")[-2] in self.duress:
            return 409, {"error": "alert_closed"}  # (super() stored them)
        return status, reply


def _tracking(station) -> bool:
    return any(t.get_coro().__qualname__ == "Station._track" and not t.done() for t in station._tasks)


def _after_close(tmp_path, how: str) -> tuple[set[str], dict, int, int]:
    """An alarm, then a cancel or a duress cancel; returns what the station logged about
    it, its queue counts, and the fixes the server got and kept after the close."""
    import logging

    api = ServerLikeApi()
    offset = [0.0]  # the station's wall clock: real time, moved on by the test
    messages: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record)

    handler = Keep(level=logging.INFO)
    logging.getLogger("balise_station").addHandler(handler)
    logging.getLogger("balise_station").setLevel(logging.INFO)
    try:
        (tmp_path / how).mkdir()
        cfg = write_config(tmp_path / how, api.url, "[evidence]\nmicrophone = \"none\"\n")
        cfg.write_text(cfg.read_text().replace("[alerts]\n", "[alerts]\nopen_check_interval_s = 1\n"))

        async def body(station):
            stopped: list[tuple[str, str]] = []
            station.recordings.stop = lambda cid, reason: stopped.append((cid, reason))
            cid = station.raise_alert("alarm", "long")
            fixes = f"/api/v1/alerts/{cid}/fixes"
            await wait_for(lambda: len(api.posts(fixes)) >= 1)
            assert station.siren.playing
            (api.duress if how == "duress" else api.closed).add(cid)  # she typed a PIN
            await wait_for(lambda: not station.siren.playing, timeout=10)  # the siren stops at once
            await wait_for(lambda: station.outbox.alert(cid).closed, timeout=10)
            kept, sent = len(api.fixes[cid]), len(api.posts(fixes))
            # the window: fixes go on (each answered 409), the recording is not stopped
            await wait_for(lambda: len(api.posts(fixes)) >= sent + 2, timeout=10)
            assert stopped == [] and _tracking(station)
            offset[0] += 601  # alerts.after_close_s (600) has passed
            await wait_for(lambda: stopped == [(cid, "alert-closed")], timeout=10)
            await wait_for(lambda: not _tracking(station), timeout=10)
            await wait_for(lambda: station.outbox.counts()["fixes_pending"] == 0, timeout=10)
            after = len(api.posts(fixes))
            assert after >= sent + 2
            said = {r.getMessage().replace(cid, "X") for r in messages if cid in r.getMessage()}
            return said, station.status()["queue"], after - sent, len(api.fixes[cid]) - kept

        return run_station(cfg, body, wall=lambda: time.time() + offset[0])
    finally:
        logging.getLogger("balise_station").removeHandler(handler)
        api.stop()


def test_every_closed_alarm_keeps_recording_and_fixes_for_the_window_and_duress_looks_like_cancel(tmp_path) -> None:
    """A station without an evidence key (recording disabled) cannot open the recording
    hint, so it cannot tell a duress cancel from a cancel: for both the siren stops at
    once, fixes and recording go on silently for alerts.after_close_s, then stop; both
    leave the same log lines and queue counts."""
    said_cancel, queue_cancel, posted_cancel, kept_cancel = _after_close(tmp_path, "cancel")
    said_duress, queue_duress, posted_duress, kept_duress = _after_close(tmp_path, "duress")
    assert said_cancel == said_duress
    assert "alert X is no longer open on the server" in said_cancel
    assert queue_cancel == queue_duress
    assert queue_cancel["dropped"] == 0 and queue_cancel["alerts_open"] == 0  # the 409s: quietly out of the queue
    # a real cancel's fixes after the close were refused and dropped; under duress the
    # server kept every one of them for her contacts and the association
    assert posted_cancel >= 2 and kept_cancel == 0
    assert posted_duress >= 2 and kept_duress >= posted_duress


def test_under_duress_recording_and_fixes_go_on_silently_until_the_association_closes(tmp_path) -> None:
    """The duress PIN, typed elsewhere: to the station the alert left the open list like a
    cancelled one, but the recording hint (only its evidence key opens it) still lists it.
    The siren stops; recording and fixes go on past alerts.after_close_s, across a
    restart, and end when the association closes the alert. A real cancel beside it ends
    with its window."""
    api = ServerLikeApi()
    offset = [0.0]
    cfg = write_config(tmp_path, api.url, "[evidence]\nmicrophone = \"generated\"\nsimulated_speed = 20\n"
                                         "segment_seconds = 1\nmax_duration_s = 3600\n")
    cfg.write_text(cfg.read_text().replace("[alerts]\n", "[alerts]\nopen_check_interval_s = 1\n"
                                                          "track_for_s = 7200\n"))
    wall = lambda: time.time() + offset[0]  # noqa: E731 (the station's clock, moved on by the test)

    def fixes_sent(cid: str) -> int:
        return len(api.posts(f"/api/v1/alerts/{cid}/fixes"))

    async def first(station):
        await wait_for(lambda: api.device_public is not None and station.server_keys is not None)
        cid = station.raise_alert("alarm", "long")
        cancelled = station.raise_alert("emergency", "double")
        await wait_for(lambda: cid in station.recordings.active() and fixes_sent(cid) >= 1)
        session = station.recordings.active()[cid]
        assert station.siren.playing
        api.duress.add(cid)  # she typed the duress PIN (on her phone, or a Flic page)
        api.closed.add(cancelled)  # and the real PIN for the other one
        await wait_for(lambda: not station.siren.playing and station.outbox.alert(cid).closed
                       and station.outbox.alert(cancelled).closed, timeout=10)
        offset[0] += 601  # past alerts.after_close_s (600)
        sent = fixes_sent(cid)
        await wait_for(lambda: fixes_sent(cid) >= sent + 2, timeout=10)  # each answered 409, kept
        assert station.recordings.active() == {cid: session} and cid in station._tracked
        await wait_for(lambda: cancelled not in station._tracked, timeout=10)  # the cancel: its window ended
        assert not station.siren.playing and not closes(station.outbox)
        return cid, session

    cid, session = run_station(cfg, first, wall=wall)  # then a restart: suspended, not closed
    assert api.fixes[cid] and len(api.fixes[cid]) >= 3

    async def second(station):
        await wait_for(lambda: station.recordings.active() == {cid: session}, timeout=10)  # resumed
        sent = fixes_sent(cid)
        await wait_for(lambda: fixes_sent(cid) >= sent + 2, timeout=10)
        assert not station.siren.playing
        api.resolved.add(cid)  # the association closes the alert
        await wait_for(lambda: not station.recordings.active() and not _tracking(station), timeout=10)
        return station.outbox.evidence_sessions()

    [row] = run_station(cfg, second, wall=wall)
    api.stop()
    assert (row["session"], row["state"], row["reason"]) == (session, "closed", "alert-closed")

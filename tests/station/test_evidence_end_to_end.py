"""End to end: a long press on a simulated button records the room (simulated microphone),
the station uploads the sealed records to a real `balise serve`, and the export of the
case verifies offline with `balise evidence verify`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from balise_station.config import load_config
from balise_station.gestures import ButtonMode, Edge
from balise_station.outbox import Outbox
from balise_station.siren import PacedSink, Siren
from balise_station.station import Station
from real_server import DEMO_PHONES, SRC, Server
from station_fakes import wait_for

DEMO_CANCEL_PIN = "1234"


def station_config(tmp_path: Path, server: Server) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[server]
url = "http://127.0.0.1:{server.port}"
token = "{server.token}"
timeout_s = 10  # a real server on a busy machine can be slow to answer
[station]
state_dir = "state"
[alerts]
fallback_delay_s = 60
open_check_interval_s = 1
after_close_s = 60
[evidence]
microphone = "generated"
simulated_speed = 4
segment_seconds = 2
max_duration_s = 600
""")
    return path


def make_station(cfg_path: Path, offset: list[float] | None = None) -> Station:
    """``offset``: seconds added to the station's wall clock, moved on by the test."""
    offset = offset if offset is not None else [0.0]
    return Station(load_config(cfg_path, env={}), siren=Siren(PacedSink(), 60),
                   simulated_buttons={"button": ButtonMode.EDGES}, wall=lambda: time.time() + offset[0])


async def after_the_window(station: Station, server: Server, cid: str, session: str, offset: list[float]) -> None:
    """The alert is cancelled on the server: the recording goes on for alerts.after_close_s
    (the same after a cancel under duress) and its segments are still taken by the server's
    intake, until the window ends and the close record goes."""
    cancel_on_server(server, cid)
    await wait_for(lambda: station.outbox.alert(cid).closed, timeout=15)
    closed_at = delivered(station, session)
    await wait_for(lambda: delivered(station, session) >= closed_at + 2, timeout=30)  # accepted after the close
    assert cid in station.recordings.active(), "still recording in the after-close window"
    offset[0] += 61  # alerts.after_close_s (60) has passed
    await wait_for(lambda: not station.recordings.active(), timeout=15)


async def long_press(station: Station) -> str:
    station.button_edge("button", Edge.PRESS)
    await wait_for(lambda: any(a.kind == "alarm" for a in station.outbox.alerts()))
    station.button_edge("button", Edge.RELEASE)
    return [a for a in station.outbox.alerts() if a.kind == "alarm"][-1].client_id


def cancel_on_server(server: Server, cid: str) -> None:
    r = httpx.post(f"http://127.0.0.1:{server.port}/api/v1/alerts/{cid}/cancel", json={"pin": DEMO_CANCEL_PIN},
                   headers={"Authorization": f"Bearer {server.token}"}, timeout=60)  # a busy machine is slow
    assert r.status_code == 200, r.text


def delivered(station: Station, session: str) -> int:
    return next(s["delivered"] for s in station.outbox.evidence_sessions() if s["session"] == session)


def server_records(server: Server, session: str) -> tuple[dict, list[tuple[int, str, int]]]:
    """The case row and its (seq, kind, conflict) records, straight from the server's database."""
    db = sqlite3.connect(server.data_dir / "balise.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        case = db.execute("SELECT * FROM evidence_case WHERE replace(session, '-', '') = ?",
                          (session.replace("-", ""),)).fetchone()
        assert case is not None, "no case on the server for this session"
        rows = db.execute("SELECT seq, kind, conflict FROM evidence_record WHERE case_id = ? ORDER BY id",
                          (case["id"],)).fetchall()
        return dict(case), [(r["seq"], r["kind"], r["conflict"]) for r in rows]
    finally:
        db.close()


def assert_complete_chain(records: list[tuple[int, str, int]], made: int) -> None:
    """Received in order, once each: open, segments, close; as many as the station made."""
    assert [seq for seq, _, _ in records] == list(range(len(records))), "in order, no gap, no duplicate"
    assert records[0][1] == "open" and records[-1][1] == "close"
    assert {kind for _, kind, _ in records[1:-1]} == {"segment"}
    assert not any(conflict for _, _, conflict in records)
    assert len(records) == made


def balise(server: Server, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BALISE_SITE_URL")}
    env.update(PYTHONPATH=SRC, BALISE_DATA_DIR=str(server.data_dir), DJANGO_SETTINGS_MODULE="balise.settings")
    return subprocess.run([sys.executable, "-m", "balise", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_long_press_records_uploads_through_an_outage_and_the_export_verifies(tmp_path, server: Server):
    cfg_path = station_config(tmp_path, server)
    enrolled = station_cli("enrol", "--config", str(cfg_path))
    assert enrolled.returncode == 0, enrolled.stderr
    keys = balise(server, "evidence", "keys").stdout
    signing = enrolled.stdout.split("server signing key (pinned): ")[1].split()[0]
    assert f"signing_fingerprint: {signing}" in keys, "the pinned key is the server's"

    offset = [0.0]

    async def main() -> tuple[str, dict]:
        station = make_station(cfg_path, offset)
        await station.start()
        try:
            await wait_for(lambda: station.server_keys is not None and station.outbox.contacts())
            cid = await long_press(station)
            assert station.siren.playing
            await wait_for(lambda: station.recordings.active().get(cid))
            session = station.recordings.active()[cid]
            await wait_for(lambda: delivered(station, session) >= 3)
            await station.siren.stop()  # a single press would do the same: the recording goes on

            server.stop()  # offline: the records wait in the queue
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] >= 4)
            assert cid in station.recordings.active(), "still recording while offline"
            server.start(demo=False)
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] <= 1, timeout=40)

            await after_the_window(station, server, cid, session, offset)  # closed elsewhere: the heartbeat says
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] == 0, timeout=30)
            [row] = station.outbox.evidence_sessions(cid)
            assert station.outbox.alert(cid).closed
            return cid, row
        finally:
            await station.close()

    cid, row = asyncio.run(main())
    assert (row["state"], row["reason"]) == ("closed", "alert-closed")
    assert row["delivered"] == row["records"] >= 7
    status = station_cli("status", "--config", str(cfg_path))
    assert "; 0 record(s) waiting for upload" in status.stdout, status.stdout

    # the alarm went out like any alarm
    alerts = [r for r in server.outbox() if r["purpose"] == "alert"]
    assert {("sms", p) for p in DEMO_PHONES} <= {(r["channel"], r["to"]) for r in alerts}

    case, records = server_records(server, row["session"])
    assert case["recording"] == "closed"
    assert_complete_chain(records, row["records"])

    exported_and_verified(server, case, tmp_path)


def station_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "balise_station", *args], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=60)


def test_a_station_restarted_mid_recording_resumes_the_same_session_and_it_verifies(tmp_path, server: Server):
    """Restarted while the alarm is open (and the server away): the next start resumes the
    recording in the same session, so the server holds one case whose chain runs
    unbroken across the restart, and its export verifies."""
    cfg_path = station_config(tmp_path, server)

    async def first() -> tuple[str, str]:
        station = make_station(cfg_path)
        await station.start()
        try:
            await wait_for(lambda: station.server_keys is not None)
            cid = await long_press(station)
            await wait_for(lambda: station.recordings.active().get(cid))
            session = station.recordings.active()[cid]
            await wait_for(lambda: delivered(station, session) >= 2)
            server.stop()
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] >= 3)
            return cid, session
        finally:
            await station.close()  # the alarm is open: suspended, no close record; the rest stays queued

    cid, session = asyncio.run(first())
    assert [(s["session"], s["state"]) for s in station_sessions(cfg_path)] == [(session, "suspended")]
    server.start(demo=False)

    offset = [0.0]

    async def second() -> dict:
        station = make_station(cfg_path, offset)
        await station.start()
        try:
            assert station.recordings.active().get(cid) == session, "the same session, resumed"
            await after_the_window(station, server, cid, session, offset)
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] == 0, timeout=40)
            [row] = station.outbox.evidence_sessions(cid)
            return row
        finally:
            await station.close()

    row = asyncio.run(second())
    assert (row["session"], row["state"], row["reason"]) == (session, "closed", "alert-closed")
    case, records = server_records(server, session)
    assert case["recording"] == "closed"
    assert_complete_chain(records, row["records"])
    exported_and_verified(server, case, tmp_path)


def station_sessions(cfg_path: Path) -> list[dict]:
    outbox = Outbox(load_config(cfg_path, env={}).db_path)
    try:
        return outbox.evidence_sessions()
    finally:
        outbox.close()


def exported_and_verified(server: Server, case: dict, tmp_path: Path) -> None:
    """The case exported by the association, checked on the expert's path."""
    out = tmp_path / "case.zip"
    exported = balise(server, "evidence", "export", case["reference"], "--user", "demo",
                      "--reason", "transmission au parquet", "--legal-reference", "PV 2026/1", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    # the expert's path: the platform's key log, pinned out of band
    key_log = tmp_path / "key-log.json"
    assert balise(server, "evidence", "key-log", "-o", str(key_log)).returncode == 0
    pin = [line.split(": ", 1)[1] for line in balise(server, "evidence", "keys").stdout.splitlines()
           if line.startswith("key_log_pin: ")][0]
    assert balise(server, "evidence", "verify", str(out)).returncode == 4  # not anchored: never INTÈGRE
    verdict = balise(server, "evidence", "verify", str(out), "--trust-log", str(key_log), "--pin", pin)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "INTÈGRE ET COMPLET" in verdict.stdout

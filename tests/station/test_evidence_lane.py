"""The evidence lane of the station's queue: durable, FIFO per session, receipts before deletion,
refusals set aside, never in front of an alert. Real sealed records from the real recorder."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from balise_evidence import crypto
from balise_evidence.audio import GeneratedMicrophone
from balise_evidence.recorder import Recorder, record_all
from balise_evidence.records import SealedUpload
from balise_evidence.uploader import Receipt, UploadRejected, UploadRetry
from balise_station.config import ConfigError, EvidenceConfig, parse_config
from balise_station.evidence import EvidenceLane, ServerKeys, load_or_create_device_key
from balise_station.outbox import Outbox
from balise_station.recording import SubprocessMicrophone, choose_microphone

SEAL = crypto.SealKey.generate()
DEVICE = crypto.DeviceKey.generate()


def session(seconds: float = 4) -> list[SealedUpload]:
    rec = Recorder(DEVICE, SEAL.public_key, alert="alert-1", segment_seconds=2)
    return record_all(GeneratedMicrophone(seconds=seconds, seed=1), rec)


def queue(ob: Outbox, uploads: list[SealedUpload]) -> None:
    ob.evidence_session_started(uploads[0].session, "alert-1")
    for u in uploads:
        ob.put_evidence(u.session, u.seq, u.kind, u.to_json())


class ScriptedServer:
    """Gives receipts like the server (for the record's hash); ``script`` maps (session, seq) to
    exceptions raised first, one per attempt."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.script: dict[tuple[str, int], list[Exception]] = {}

    def upload(self, upload: SealedUpload) -> Receipt:
        key = (upload.session, upload.seq)
        self.calls.append(key)
        if self.script.get(key):
            raise self.script[key].pop(0)
        return Receipt({"record": {"sha256": upload.sha256, "seq": upload.seq}}, b"sig", False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def idle() -> None:
    return None


def test_the_lane_is_durable_fifo_per_session_and_idempotent(tmp_path) -> None:
    a, b = session(), session(3)
    ob = Outbox(tmp_path / "q.sqlite3")
    queue(ob, a[:2])
    queue_b = b
    ob.evidence_session_started(queue_b[0].session, "alert-2")
    for u in queue_b:
        ob.put_evidence(u.session, u.seq, u.kind, u.to_json())
    for u in a[2:]:
        ob.put_evidence(u.session, u.seq, u.kind, u.to_json())
    ob.put_evidence(a[0].session, 0, "open", a[0].to_json())  # the same record again: kept once
    ob.close()

    ob = Outbox(tmp_path / "q.sqlite3")  # a restart
    heads = ob.evidence_heads(now=2e9)
    assert [(h.session, h.seq) for h in heads] == [(a[0].session, 0), (b[0].session, 0)]
    assert SealedUpload.from_json(heads[0].body) == a[0]
    assert ob.counts()["evidence_pending"] == len(a) + len(b)
    assert [s["records"] for s in ob.evidence_sessions()] == [len(a), len(b)]

    ob.evidence_retry(heads[0].id, next_ts=5000.0, error="offline")
    assert [h.session for h in ob.evidence_heads(now=4999.0)] == [b[0].session], "the other session goes on"
    assert ob.next_evidence_attempt() == 0
    ob.evidence_delivered(heads[1].id, "r" * 64)
    assert [h.seq for h in ob.evidence_heads(now=4999.0)] == [1]
    assert ob.evidence_sessions()[1]["delivered"] == 1 and ob.evidence_sessions()[1]["last_receipt"] == "r" * 64
    ob.evidence_retry_now()
    assert [h.seq for h in ob.evidence_heads(now=0.0)] == [0, 1]


def test_receipts_delete_retries_keep_refusals_are_set_aside(tmp_path) -> None:
    uploads = session()
    ob = Outbox(tmp_path / "q.sqlite3")
    queue(ob, uploads)
    server = ScriptedServer()
    first, second = (uploads[0].session, 1), (uploads[0].session, 2)
    server.script[first] = [UploadRetry("server answered 503"), UploadRetry("predecessor_missing")]
    server.script[second] = [UploadRejected(413, "oversized", "too big", "ciphertext")]
    clock = Clock()
    receipts: list[tuple[str, str]] = []
    lane = EvidenceLane(ob, lambda: server, idle, on_receipt=lambda s, r: receipts.append((s, r)), clock=clock,
                        rand=lambda: 0.0)

    asyncio.run(lane.drain())
    assert server.calls == [(uploads[0].session, 0), first], "nothing after a record that must wait"
    assert [r.seq for r in ob.evidence()] == list(range(1, len(uploads)))
    clock.now = ob.next_evidence_attempt()
    asyncio.run(lane.drain())
    clock.now = ob.next_evidence_attempt()
    asyncio.run(lane.drain())

    seqs = [seq for _, seq in server.calls]
    assert seqs == [0, 1, 1, 1] + list(range(2, len(uploads))), "in order, the refused one skipped once"
    assert ob.evidence() == []
    [aside] = ob.evidence("rejected")
    assert aside.seq == 2 and SealedUpload.from_json(aside.body) == uploads[2], "kept whole for the association"
    assert ob.dropped()[-1]["what"] == "evidence" and ob.dropped()[-1]["status"] == 413
    assert [r for _, r in receipts] == [Receipt({"record": {"sha256": u.sha256, "seq": u.seq}}, b"", False).sha256
                                        for u in uploads if u.seq != 2]
    row = ob.evidence_sessions()[0]
    assert row["delivered"] == len(uploads) - 1 and ob.counts()["evidence_rejected"] == 1


def test_an_upload_waits_while_an_alert_is_being_sent(tmp_path) -> None:
    uploads = session(2)
    ob = Outbox(tmp_path / "q.sqlite3")
    queue(ob, uploads)
    server = ScriptedServer()

    async def main() -> None:
        alerts_idle = asyncio.Event()  # an alert attempt is in flight
        lane = EvidenceLane(ob, lambda: server, alerts_idle.wait)
        task = asyncio.create_task(lane.drain())
        for _ in range(20):
            await asyncio.sleep(0)
        assert server.calls == []
        alerts_idle.set()
        await task

    asyncio.run(main())
    assert [seq for _, seq in server.calls] == [u.seq for u in uploads]


def test_no_upload_before_enrolment(tmp_path) -> None:
    ob = Outbox(tmp_path / "q.sqlite3")
    queue(ob, session(2))
    asyncio.run(EvidenceLane(ob, lambda: None, idle).drain())
    assert ob.counts()["evidence_pending"] == len(session(2))


def test_device_key_is_created_once_private(tmp_path) -> None:
    path = tmp_path / "state" / "key.pem"
    key = load_or_create_device_key(path)
    assert path.stat().st_mode & 0o077 == 0
    assert load_or_create_device_key(path).fingerprint == key.fingerprint
    assert ServerKeys.from_json({"seal_public_pem": "nope", "signing_public_pem": "", "seal_fingerprint": "",
                                 "signing_fingerprint": ""}) is None


def test_microphone_choice_never_fakes_evidence(tmp_path) -> None:
    assert choose_microphone(EvidenceConfig("auto"), which=lambda tool: None).make is None
    got = choose_microphone(EvidenceConfig("auto", device="hw:1"), which=lambda t: t if t == "parecord" else None)
    assert got.name == "parecord" and not got.simulated
    assert choose_microphone(EvidenceConfig("arecord"), which=lambda t: None).make is None
    assert choose_microphone(EvidenceConfig("generated")).simulated
    assert choose_microphone(EvidenceConfig("none")).make is None


def test_a_capture_subprocess_is_read_as_pcm() -> None:
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 25); sys.stdout.flush()"
    mic = SubprocessMicrophone([sys.executable, "-c", script])
    try:
        first = mic.read(1600)
        rest = mic.read(10_000)
        assert (len(first), len(rest)) == (3200, 6400 - 3200)
        assert first == (bytes(range(256)) * 25)[:3200]
        assert mic.read(100) == b""
    finally:
        mic.close()


@pytest.mark.parametrize("table, message", [
    ('microphone = "usb"', "evidence.microphone must be one of"),
    ('microphone = "wav"', "evidence.wav_path is required"),
    ('microphone = "wav"\nwav_path = "missing.wav"', "evidence.wav_path: no such file"),
    ("max_duration_s = 1", "evidence.max_duration_s must be between"),
    ("segment_seconds = 20", "evidence.segment_seconds must be between"),
    ("loudness = 3", "unknown setting evidence.loudness"),
])
def test_bad_evidence_settings_are_one_line_errors(tmp_path, table: str, message: str) -> None:
    import tomllib

    raw = tomllib.loads(f'[server]\nurl = "http://x"\ntoken = "t"\n[evidence]\n{table}\n')
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base_dir=Path(tmp_path))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_refused_token_keeps_the_records_until_the_station_is_paired_again(tmp_path) -> None:
    """A 401 is about the token, not the record: nothing is set aside, the session waits in
    order, and the re-pairing (Outbox.retry_refused) sends it at once."""
    uploads = session()
    ob = Outbox(tmp_path / "q.sqlite3")
    queue(ob, uploads)
    server = ScriptedServer()
    server.script[(uploads[0].session, 0)] = [UploadRejected(401, "unauthorized", "invalid token")]
    clock = Clock()
    lane = EvidenceLane(ob, lambda: server, idle, on_receipt=lambda s, r: None, clock=clock, rand=lambda: 0.0)

    asyncio.run(lane.drain())
    assert ob.evidence("rejected") == [] and ob.counts()["evidence_rejected"] == 0
    assert [r.seq for r in ob.evidence()] == [u.seq for u in uploads], "all kept, in order"
    assert ob.next_evidence_attempt() > clock.now
    asyncio.run(lane.drain())
    assert len(server.calls) == 1, "not before its time"

    ob.retry_refused()  # what pairing again does
    assert ob.next_evidence_attempt() <= clock.now
    asyncio.run(lane.drain())
    assert ob.evidence() == [] and ob.evidence_sessions()[0]["delivered"] == len(uploads)

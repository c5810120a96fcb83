"""The server's evidence keys rotate under a station that pinned them at enrolment: the
station follows the platform's key log, from the signing key it pinned, and nothing else.

- signing key rotated on a real server in the middle of a recording: the lane re-pins and
  every record of the session gets a verified receipt;
- a key log that does not chain to the pinned key (signed by a key the station never
  pinned): refused, the records stay queued, and the status says why;
- seal key rotated: the next session is sealed to the new key and accepted.
"""

from __future__ import annotations

import asyncio
import json

from balise_evidence import crypto, keylog, ledger
from balise_evidence.records import SealedUpload
from balise_evidence.uploader import Receipt, ReceiptKeyUnknown, UploadRetry
from balise_station.api import ApiResult, Outcome
from balise_station.evidence import KEYS_META, EvidenceLane, ServerKeys, pinned_keys, refresh_keys
from balise_station.outbox import Outbox
from real_server import Server
from station_fakes import wait_for
from test_evidence_end_to_end import (after_the_window, assert_complete_chain, balise, delivered, long_press,
                                      make_station, server_records, station_cli, station_config)
from test_evidence_lane import Clock, idle, queue, session


def fingerprint_line(server: Server, name: str) -> str:
    out = balise(server, "evidence", "keys").stdout
    return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(f"{name}: ")][0]


def rotate(server: Server, role: str) -> str:
    """``balise evidence rotate-key ROLE``, then the restart the command asks for."""
    done = balise(server, "evidence", "rotate-key", role)
    assert done.returncode == 0, done.stderr
    server.stop()
    server.start(demo=False)
    return done.stdout.split(": ", 1)[1].split()[0]


def test_a_signing_key_rotated_mid_recording_is_followed_through_the_key_log(tmp_path, server: Server):
    cfg_path = station_config(tmp_path, server)
    offset = [0.0]

    async def main() -> tuple[str, dict, str, str]:
        station = make_station(cfg_path, offset)
        await station.start()
        try:
            await wait_for(lambda: station.server_keys is not None and station.outbox.contacts())
            first = station.server_keys.signing_fingerprint
            cid = await long_press(station)
            await wait_for(lambda: station.recordings.active().get(cid))
            session_id = station.recordings.active()[cid]
            await wait_for(lambda: delivered(station, session_id) >= 2)

            new = await asyncio.to_thread(rotate, server, "signing")  # between two segments
            assert new != first
            made = station.outbox.evidence_sessions(cid)[0]["records"]
            # records made after the rotation get receipts signed by the new key, and verified
            await wait_for(lambda: delivered(station, session_id) >= made + 2, timeout=60)
            assert station.server_keys.signing_fingerprint == new, "re-pinned through the key log"
            assert pinned_keys(station.outbox).signing_fingerprint == new, "kept across restarts"
            assert station.evidence_error == ""

            await after_the_window(station, server, cid, session_id, offset)
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] == 0, timeout=30)
            [row] = station.outbox.evidence_sessions(cid)
            return cid, row, first, new
        finally:
            await station.close()

    cid, row, first, new = asyncio.run(main())
    assert (row["state"], row["reason"]) == ("closed", "alert-closed")
    assert row["delivered"] == row["records"]
    case, records = server_records(server, row["session"])
    assert case["recording"] == "closed"
    assert_complete_chain(records, row["records"])
    assert fingerprint_line(server, "signing_fingerprint") == new

    # the case, signed by both keys, still exports and verifies against the platform's key log
    out = tmp_path / "case.zip"
    exported = balise(server, "evidence", "export", case["reference"], "--user", "demo",
                      "--reason", "transmission au parquet", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    key_log = tmp_path / "key-log.json"
    assert balise(server, "evidence", "key-log", "-o", str(key_log)).returncode == 0
    verdict = balise(server, "evidence", "verify", str(out), "--trust-log", str(key_log),
                     "--pin", fingerprint_line(server, "key_log_pin"))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_after_a_seal_rotation_the_next_session_is_sealed_to_the_new_key(tmp_path, server: Server):
    cfg_path = station_config(tmp_path, server)
    enrolled = station_cli("enrol", "--config", str(cfg_path))
    assert enrolled.returncode == 0, enrolled.stderr
    old_seal = enrolled.stdout.split("server seal key (pinned): ")[1].split()[0]
    new_seal = rotate(server, "seal")
    assert new_seal != old_seal
    offset = [0.0]

    async def main() -> dict:
        station = make_station(cfg_path, offset)
        await station.start()  # the key log is read at start: the new seal key, chained from the pinned one
        try:
            await wait_for(lambda: station.server_keys is not None and station.outbox.contacts())
            await wait_for(lambda: station.server_keys.seal_fingerprint == new_seal, timeout=30)
            cid = await long_press(station)
            await wait_for(lambda: station.recordings.active().get(cid))
            session_id = station.recordings.active()[cid]
            await wait_for(lambda: delivered(station, session_id) >= 2)
            await after_the_window(station, server, cid, session_id, offset)
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] == 0, timeout=30)
            [row] = station.outbox.evidence_sessions(cid)
            return row
        finally:
            await station.close()

    row = asyncio.run(main())
    _case, records = server_records(server, row["session"])
    assert_complete_chain(records, row["records"])
    db_header = _open_header(server, row["session"])
    assert db_header["server_key"] == new_seal, "sealed to the new key"


def _open_header(server: Server, session_id: str) -> dict:
    import sqlite3

    db = sqlite3.connect(server.data_dir / "balise.sqlite3")
    try:
        [header] = db.execute("SELECT r.header FROM evidence_record r JOIN evidence_case c ON r.case_id = c.id "
                              "WHERE replace(c.session, '-', '') = ? AND r.kind = 'open'",
                              (session_id.replace("-", ""),)).fetchone()
        return json.loads(bytes(header))
    finally:
        db.close()


# --- a forged key log, without a server ------------------------------------------------

class LogApi:
    """Serves a key log document (bytes) as the device API would."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.calls = 0

    async def evidence_key_log(self) -> ApiResult:
        self.calls += 1
        return ApiResult(Outcome.OK, 200, json.loads(self.document))


def _log(*steps: tuple[str, object, crypto.Signer]) -> bytes:
    head, entries = ledger.Head(), []
    for role, key, signer in steps:
        entry = keylog.append(head, keylog.body(role=role, fingerprint=key.fingerprint, public_pem=key.public_pem,
                                                at="2026-12-01T00:00:00Z"), signer)
        head = ledger.Head(entry.body["index"], entry.sha256)
        entries.append((entry.data, entry.signature))
    return keylog.document(entries)


class SignedServer:
    """Receipts signed by ``signer`` (the server after its rotation)."""

    def __init__(self, signer: crypto.Signer) -> None:
        self.signer = signer

    def upload(self, upload: SealedUpload) -> Receipt:
        body = {"record": {"sha256": upload.sha256, "seq": upload.seq}}
        receipt = Receipt(body, b"", False)
        return Receipt(body, self.signer.sign(receipt.data), False)


def _checked(signing: crypto.Signer, server: SignedServer):
    from balise_evidence.uploader import Uploader

    class Checked(Uploader):
        def upload(self, upload: SealedUpload) -> Receipt:
            r = server.upload(upload)
            return self.check_receipt(r, upload)

    return Checked("http://unused", "t", server_signing_pem=signing.public_pem)


def test_a_key_log_that_does_not_chain_to_the_pinned_key_is_refused(tmp_path) -> None:
    old, new, forger = crypto.Signer.generate(), crypto.Signer.generate(), crypto.Signer.generate()
    seal = crypto.SealKey.generate()
    ob = Outbox(tmp_path / "q.sqlite3")
    pinned = ServerKeys(seal.public_pem, old.public_pem, seal.fingerprint, old.fingerprint)
    ob.set_meta(KEYS_META, pinned.to_json())
    uploads = session()
    queue(ob, uploads)
    server = SignedServer(new)  # the server (or someone in the way) now signs with `new`

    forged = [
        _log(("signing", forger, forger), ("signing", new, forger)),  # someone else's log
        _log(("signing", old, old), ("signing", new, forger)),  # `new` not introduced by the pinned key
        _log(("signing", forger, forger), ("signing", old, forger), ("signing", new, forger)),
    ]
    for document in forged:
        api = LogApi(document)
        state = {"uploader": _checked(old, server)}
        errors: list[str] = []

        async def refresh(exc: ReceiptKeyUnknown) -> bool:
            outcome = await refresh_keys(api, ob)  # noqa: B023
            errors.append(outcome.refused)  # noqa: B023
            return outcome.changed

        lane = EvidenceLane(ob, lambda: state["uploader"], idle, clock=Clock(), rand=lambda: 0.0,  # noqa: B023
                            refresh_keys=refresh)
        asyncio.run(lane.drain())
        assert api.calls == 1
        assert pinned_keys(ob) == pinned, "never an unverified key"
        assert ob.counts()["evidence_pending"] == len(uploads), "the records stay queued"
        assert errors and "does not chain to the pinned signing key" in errors[0]
        [head] = ob.evidence_heads(now=2e9)[:1]
        assert head.seq == 0 and head.attempts >= 1, "retried, not set aside"
        ob.evidence_retry_now()

    # the genuine log: `new` introduced by the pinned key (after a rotation of the seal key too)
    seal2 = crypto.SealKey.generate()
    api = LogApi(_log(("signing", old, old), ("seal", seal, old), ("signing", new, old), ("seal", seal2, new)))
    state = {"uploader": _checked(old, server)}

    async def refresh_ok(exc: ReceiptKeyUnknown) -> bool:
        outcome = await refresh_keys(api, ob)
        if outcome.changed:
            state["uploader"] = _checked(new, server)
        return outcome.changed

    lane = EvidenceLane(ob, lambda: state["uploader"], idle, clock=Clock(), rand=lambda: 0.0,
                        refresh_keys=refresh_ok)
    asyncio.run(lane.drain())
    assert ob.counts()["evidence_pending"] == 0
    assert api.calls == 1, "one fetch of the key log, then every receipt verifies"
    assert pinned_keys(ob) == ServerKeys(seal2.public_pem, new.public_pem, seal2.fingerprint, new.fingerprint)


def test_a_receipt_no_key_log_explains_is_retried(tmp_path) -> None:
    """The log chains from the pinned key but lists no newer signing key: the receipt is
    still refused (retried), and the pinned key stays."""
    old, other = crypto.Signer.generate(), crypto.Signer.generate()
    seal = crypto.SealKey.generate()
    ob = Outbox(tmp_path / "q.sqlite3")
    pinned = ServerKeys(seal.public_pem, old.public_pem, seal.fingerprint, old.fingerprint)
    ob.set_meta(KEYS_META, pinned.to_json())
    queue(ob, session(2))
    api = LogApi(_log(("signing", old, old), ("seal", seal, old)))

    async def refresh(exc: ReceiptKeyUnknown) -> bool:
        return (await refresh_keys(api, ob)).changed

    lane = EvidenceLane(ob, lambda: _checked(old, SignedServer(other)), idle, clock=Clock(), rand=lambda: 0.0,
                        refresh_keys=refresh)
    asyncio.run(lane.drain())
    assert pinned_keys(ob) == pinned and ob.counts()["evidence_pending"] == len(session(2))
    assert isinstance(ReceiptKeyUnknown(None, "x"), UploadRetry)


def test_a_station_refuses_a_key_log_that_does_not_chain_and_says_so(tmp_path, server: Server):
    """The station pinned a signing key that the server's log never introduced (as if the
    server it enrolled with were not this one): receipts and log refused, records kept,
    `balise-station status` says why."""
    cfg_path = station_config(tmp_path, server)
    assert station_cli("enrol", "--config", str(cfg_path)).returncode == 0
    stranger = crypto.Signer.generate()
    from balise_station.config import load_config

    ob = Outbox(load_config(cfg_path, env={}).db_path)
    keys = pinned_keys(ob)
    assert keys is not None
    ob.set_meta(KEYS_META, {**keys.to_json(), "signing_public_pem": stranger.public_pem,
                            "signing_fingerprint": stranger.fingerprint})
    ob.close()

    async def main() -> None:
        station = make_station(cfg_path)
        await station.start()
        try:
            await wait_for(lambda: station.server_keys is not None and station.outbox.contacts())
            cid = await long_press(station)
            await wait_for(lambda: station.recordings.active().get(cid))
            session_id = station.recordings.active()[cid]
            await wait_for(lambda: station.outbox.counts()["evidence_pending"] >= 3, timeout=30)
            assert "does not chain to the pinned signing key" in station.evidence_keys_error
            assert delivered(station, session_id) == 0, "no receipt accepted"
            assert station.server_keys.signing_fingerprint == stranger.fingerprint, "never re-pinned"
        finally:
            await station.close()

    asyncio.run(main())
    status = station_cli("status", "--config", str(cfg_path))
    assert "SERVER KEYS NOT FOLLOWED: the server's key log does not chain to the pinned signing key" in status.stdout, \
        status.stdout

"""Evidence on the station: enrolment (device key, pinned server keys) and the upload lane.

Enrolment, once (first run, or ``balise-station enrol``): the station creates its
ECDSA P-256 key (``state_dir/evidence-device-key.pem``, mode 0600), registers it
(``POST /evidence/device-key``), then pins the server's seal and receipt-signing
keys from ``GET /evidence/keys`` (trust on first use).

Key rotation: the pinned keys are replaced only through the platform's key log
(``GET /evidence/key-log``, ``refresh_keys``), checked from the pinned signing key
by the same code as the expert's verifier (``balise_evidence.keylog.in_force``): a
new signing key is taken only if it was introduced by the pinned one or by one of
its successors, and the newest seal key listed since then is taken with it. A log
that does not chain to the pinned key is refused, whatever it says. The station
reads the log at start, every ``KEY_CHECK_S``, and when a receipt is not signed by
the pinned key (then the same receipt is checked again with the new key).

The upload lane sends the evidence queue (``Outbox.evidence_*``) one record at a
time, FIFO within each session. A record's local copy goes only once the
server's receipt has been checked against the pinned signing key; transient
failures (offline, 5xx, 429, ``predecessor_missing``) keep it with a backoff; a
permanent refusal sets it aside for the association and the lane goes on. It
never competes with an alert: each upload waits until no alert attempt is in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from balise_evidence import crypto, keylog
from balise_evidence.records import SealedUpload
from balise_evidence.uploader import Receipt, ReceiptKeyUnknown, UploadRejected, UploadRetry
from balise_evidence.verifier import AnchorError
from balise_station.api import DeviceApi, Outcome
from balise_station.delivery import Backoff
from balise_station.i18n import _
from balise_station.outbox import REFUSED, EvidenceRow, Outbox
from balise_station.waits import wait_event

log = logging.getLogger(__name__)

EVIDENCE_BACKOFF = Backoff(1.0, 60.0)
KEYS_META = "evidence_server_keys"
KEY_CHECK_S = 3600.0  # the key log is read this often (and at start, and on a receipt the pinned key refuses)


@dataclass(frozen=True)
class ServerKeys:
    """The server's evidence keys as pinned at enrolment."""

    seal_public_pem: str
    signing_public_pem: str
    seal_fingerprint: str
    signing_fingerprint: str

    @classmethod
    def from_json(cls, data: Any) -> ServerKeys | None:
        try:
            keys = cls(str(data["seal_public_pem"]), str(data["signing_public_pem"]),
                       str(data["seal_fingerprint"]), str(data["signing_fingerprint"]))
            crypto.load_seal_public_key(keys.seal_public_pem)
            crypto.load_public_pem(keys.signing_public_pem)
        except (KeyError, TypeError, ValueError, crypto.CryptoError):
            return None
        return keys

    def to_json(self) -> dict[str, str]:
        return {"seal_public_pem": self.seal_public_pem, "signing_public_pem": self.signing_public_pem,
                "seal_fingerprint": self.seal_fingerprint, "signing_fingerprint": self.signing_fingerprint}


def load_or_create_device_key(path: Path) -> crypto.DeviceKey:
    """The station's evidence signing key; created once (0600, never rewritten)."""
    try:
        return crypto.DeviceKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    key = crypto.DeviceKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.to_pem())
        f.flush()
        os.fsync(f.fileno())
    log.info("evidence device key created (%s)", key.fingerprint[:16])
    return key


def pinned_keys(outbox: Outbox) -> ServerKeys | None:
    return ServerKeys.from_json(outbox.meta(KEYS_META))


@dataclass(frozen=True)
class Enrolment:
    keys: ServerKeys | None
    error: str = ""
    retry: bool = True

    @property
    def done(self) -> bool:
        return self.keys is not None


async def enrol(api: DeviceApi, outbox: Outbox, device_key: crypto.DeviceKey) -> Enrolment:
    """Registers the device key (idempotent) and pins the server's keys on first use."""
    if outbox.meta("evidence_device_key") != device_key.fingerprint:
        result = await api.register_evidence_key(device_key.public_pem)
        if not result.ok:
            permanent = result.outcome is Outcome.PERMANENT
            if result.status == 409:
                return Enrolment(None, _("the server holds another evidence key for this device "
                                         "(the association must revoke it)"), retry=False)
            return Enrolment(None, _("device key not registered: {error}").format(error=result.error),
                             retry=not permanent)
        outbox.set_meta("evidence_device_key", device_key.fingerprint)
    keys = pinned_keys(outbox)
    if keys is None:
        result = await api.evidence_keys()
        keys = ServerKeys.from_json(result.body) if result.ok else None
        if keys is None:
            return Enrolment(None, _("server keys not fetched: {error}").format(
                error=result.error or _("unexpected answer")),
                             retry=result.outcome is not Outcome.PERMANENT)
        outbox.set_meta(KEYS_META, keys.to_json())
        log.info("evidence keys pinned: seal %s, signing %s", keys.seal_fingerprint[:16],
                 keys.signing_fingerprint[:16])
    return Enrolment(keys)


@dataclass(frozen=True)
class Refresh:
    """What reading the key log did: ``changed`` (new keys pinned), ``error`` (the log
    could not be fetched: try later), ``refused`` (it does not chain to the pinned
    signing key: its keys are never used)."""

    keys: ServerKeys | None
    changed: bool = False
    error: str = ""
    refused: str = ""


async def refresh_keys(api: Any, outbox: Outbox) -> Refresh:
    """Reads the server's key log and re-pins the keys in force if, and only if, the log
    chains to the signing key pinned now (``keylog.in_force``)."""
    keys = pinned_keys(outbox)
    if keys is None:
        return Refresh(None, error="not enrolled")
    result = await api.evidence_key_log()
    if not result.ok or not isinstance(result.body, dict):
        return Refresh(keys, error=f"key log not fetched: {result.error or 'unexpected reply'}")
    try:
        found = keylog.in_force(json.dumps(result.body).encode("utf-8"), keys.signing_fingerprint)
    except AnchorError as exc:
        refused = f"the server's key log does not chain to the pinned signing key ({exc})"
        log.error("evidence: %s: its keys are not used", refused)
        return Refresh(keys, refused=refused)
    seal = found.seal
    new = ServerKeys.from_json({
        "seal_public_pem": seal.public_pem if seal else keys.seal_public_pem,
        "seal_fingerprint": seal.fingerprint if seal else keys.seal_fingerprint,
        "signing_public_pem": found.signing.public_pem, "signing_fingerprint": found.signing.fingerprint})
    if new is None:
        refused = "the server's key log lists a key of the wrong kind"
        log.error("evidence: %s: its keys are not used", refused)
        return Refresh(keys, refused=refused)
    if new == keys:
        return Refresh(keys)
    outbox.set_meta(KEYS_META, new.to_json())
    log.warning("evidence keys re-pinned from the server's key log (chained from the pinned signing key): "
                "seal %s, signing %s", new.seal_fingerprint[:16], new.signing_fingerprint[:16])
    return Refresh(new, changed=True)


class RecordUploader(Protocol):
    def upload(self, upload: SealedUpload) -> Receipt: ...

    def check_receipt(self, receipt: Receipt, upload: SealedUpload) -> Receipt: ...


class EvidenceLane:
    """Sends the evidence queue to the server, FIFO per session (blocking uploads run in a thread)."""

    def __init__(self, outbox: Outbox, uploader: Callable[[], RecordUploader | None],
                 alerts_idle: Callable[[], Awaitable[Any]],
                 on_receipt: Callable[[str, str], None] = lambda session, sha256: None,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random,
                 backoff: Backoff = EVIDENCE_BACKOFF,
                 refresh_keys: Callable[[ReceiptKeyUnknown], Awaitable[bool]] | None = None) -> None:
        self.outbox = outbox
        self.refresh_keys = refresh_keys  # True when new keys were pinned (the uploader then uses them)
        self.uploader = uploader
        self.alerts_idle = alerts_idle
        self.on_receipt = on_receipt
        self.clock = clock
        self.rand = rand
        self.backoff = backoff
        self._wake = asyncio.Event()
        self.last_receipt_ts: float | None = None

    def kick(self) -> None:
        self._wake.set()

    async def send(self, row: EvidenceRow, uploader: RecordUploader) -> bool:
        """One attempt for one record; True when the queue moved on (receipt, or set aside)."""
        await self.alerts_idle()
        try:
            upload = SealedUpload.from_json(row.body)
            try:
                receipt = await asyncio.to_thread(uploader.upload, upload)
            except ReceiptKeyUnknown as exc:
                receipt = await self._after_key_change(exc, upload, uploader)
        except UploadRetry as exc:
            delay = self.backoff.delay(row.attempts, self.rand())
            self.outbox.evidence_retry(row.id, self.clock() + delay, str(exc))
            log.info("evidence %s:%d not delivered (%s); retry in %.1f s", row.session[:8], row.seq, exc, delay)
            return False
        except UploadRejected as exc:
            if exc.status == 401:
                # The token, not the record: kept in order (the session's next records need
                # it first) and sent again as soon as the station is paired again.
                delay = self.backoff.delay(row.attempts, self.rand())
                self.outbox.evidence_retry(row.id, self.clock() + delay, f"{REFUSED}HTTP 401")
                log.error("evidence %s:%d refused: the device token is no longer valid; kept until the station "
                          "is paired again", row.session[:8], row.seq)
                return False
            self.outbox.evidence_rejected(row.id, exc.status, f"{exc.code} {exc.field or ''}".strip())
            log.error("evidence %s:%d refused by the server for good (%s %s): kept aside for the association",
                      row.session[:8], row.seq, exc.status, exc.code)
            return True
        except Exception as exc:  # a bug or a corrupt row must not stop the lane
            delay = self.backoff.delay(row.attempts, self.rand())
            self.outbox.evidence_retry(row.id, self.clock() + delay, type(exc).__name__)
            log.exception("evidence %s:%d upload failed", row.session[:8], row.seq)
            return False
        self.outbox.evidence_delivered(row.id, receipt.sha256)
        self.last_receipt_ts = self.clock()
        self.on_receipt(row.session, receipt.sha256)
        return True

    async def _after_key_change(self, exc: ReceiptKeyUnknown, upload: SealedUpload,
                                used: RecordUploader) -> Receipt:
        """A receipt the pinned key does not verify: the server's signing key may have been
        rotated. If the key log gives a new key (chained from the pinned one), the same
        receipt is checked again with it; else the record waits, as for any retry."""
        if exc.receipt is None:
            raise exc
        current = self.uploader()
        if current is not None and current is not used:  # re-pinned while this upload ran
            try:
                return current.check_receipt(exc.receipt, upload)
            except ReceiptKeyUnknown:
                pass
        if self.refresh_keys is None or not await self.refresh_keys(exc):
            raise exc
        current = self.uploader()
        if current is None:
            raise exc
        return current.check_receipt(exc.receipt, upload)

    async def drain(self) -> None:
        """Everything due now: each session's records in order, until one has to wait."""
        progressed = True
        while progressed:
            progressed = False
            for head in self.outbox.evidence_heads(self.clock()):
                uploader = self.uploader()  # anew each time: the keys may have been re-pinned
                if uploader is None:
                    return
                progressed |= await self.send(head, uploader)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.drain()
            until = self.outbox.next_evidence_attempt() if self.uploader() is not None else None
            await wait_event(self._wake, None if until is None else until - self.clock())

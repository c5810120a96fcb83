"""Server-signed, hash-chained entries: the session log (whose entries are the receipts
and truncation notices) and the custody records of a case.

An entry is canonical JSON with ``index`` and ``prev`` (SHA-256 of the previous entry's
bytes, zeros for the first), signed with the server's Ed25519 key. Append-only: the
only operation is ``append``, which needs the head it extends.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import FORMAT_VERSION
from .canonical import ZERO_HASH, canonical, sha256_hex
from .crypto import Signer


@dataclass(frozen=True)
class Entry:
    body: dict
    data: bytes
    sha256: str
    signature: bytes


@dataclass(frozen=True)
class Head:
    index: int = -1
    sha256: str = ZERO_HASH


def append(head: Head, body: dict, signer: Signer) -> Entry:
    """Sign ``body`` as the entry after ``head``."""
    full = {**body, "v": FORMAT_VERSION, "index": head.index + 1, "prev": head.sha256, "signer": signer.fingerprint}
    data = canonical(full)
    return Entry(full, data, sha256_hex(data), signer.sign(data))


def receipt_body(*, session: str, at: str, header: dict, header_sha256: str, conflict: bool) -> dict:
    """The log entry (and receipt) for a record the server has accepted and stored."""
    return {
        "type": "receipt",
        "session": session,
        "at": at,
        "record": {
            "kind": header["kind"],
            "seq": header["seq"],
            "sha256": header_sha256,
            "cipher_sha256": header.get("cipher_sha256"),
        },
        "device_key": header["device_key"],
        "conflict": conflict,
    }


def truncation_body(*, session: str, at: str, last_seq: int, last_record_sha256: str, last_received_at: str,
                    silence_seconds: int) -> dict:
    """The notice for a session silent for ``silence_seconds`` without a close record."""
    return {
        "type": "truncation",
        "session": session,
        "at": at,
        "last_seq": last_seq,
        "last_record_sha256": last_record_sha256,
        "last_received_at": last_received_at,
        "silence_seconds": silence_seconds,
        "statement": "No close record was received: the recording ends here, cut short.",
    }


def custody_body(*, case: str, at: str, actor: dict, action: str, reason: str, legal_reference: str,
                 details: dict | None = None) -> dict:
    return {
        "type": "custody",
        "case": case,
        "at": at,
        "actor": actor,
        "action": action,
        "reason": reason,
        "legal_reference": legal_reference,
        "details": details or {},
    }

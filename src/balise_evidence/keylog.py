"""The platform's key log: a signed, append-only list of every public key the platform
uses for evidence (server signing, export, seal, and each device's key), published by
the association at a stable URL so that an expert anchors a package outside of it.

Each entry is a ``ledger`` entry (canonical JSON, ``index``/``prev`` hash chain, Ed25519
signature naming its ``signer``). The first entry introduces the first signing key and
is signed by it: its fingerprint is the one the association publishes out of band (the
``--pin`` of the verifier). A new signing key is introduced by an entry signed by the
previous one, and signs every later entry, so that the history stays one chain of
signatures back to the pinned key. ``verifier.read_key_log`` checks a document (the
expert's verifier and the home station use that one check); ``in_force`` is what a
station that pinned a signing key makes of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import ledger, verifier
from .canonical import b64e
from .crypto import Signer

FORMAT = "balise-key-log/1"
ROLES = ("signing", "export", "seal", "device")


def body(*, role: str, fingerprint: str, public_pem: str, at: str) -> dict:
    if role not in ROLES:
        raise ValueError(f"unknown key role {role!r}")
    return {"type": "key", "action": "add", "role": role, "fingerprint": fingerprint, "public_pem": public_pem,
            "at": at}


def append(head: ledger.Head, entry_body: dict, signer: Signer) -> ledger.Entry:
    return ledger.append(head, entry_body, signer)


def document(entries: list[tuple[bytes, bytes]]) -> bytes:
    """The published form: {"format", "entries": [{"data", "signature"}]} (data is the
    canonical JSON text of the entry, signature its base64 Ed25519 signature)."""
    return json.dumps({"format": FORMAT, "entries": [{"data": data.decode("utf-8"), "signature": b64e(sig)}
                                                     for data, sig in entries]},
                      ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class InForce:
    """The newest signing and seal keys a key log lists after a pinned signing key."""

    signing: verifier.LoggedKey
    seal: verifier.LoggedKey | None  # None: no seal key listed since the pinned signing key


def in_force(data: bytes, pinned_signing: str) -> InForce:
    """The keys a station that pinned the signing key ``pinned_signing`` may move to: the
    log is checked by ``verifier.read_key_log`` from the pinned key (its introduction,
    wherever it is in the log), so every key returned was introduced by the pinned key or
    by one of its successors. Raises ``verifier.AnchorError`` for any other log."""
    vouched = verifier.read_key_log(data, pinned_signing, pin_anywhere=True).keys
    signing = [k for k in vouched if k.role == "signing"]
    seal = [k for k in vouched if k.role == "seal"]
    return InForce(signing[-1], seal[-1] if seal else None)

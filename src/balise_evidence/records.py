"""Record headers: what the device signs.

A session is a chain of records: ``open`` (seq 0), ``segment`` (seq 1..n), ``close``
(seq n+1). Every header is canonical JSON (RFC 8785), carries the SHA-256 of the
previous header (``prev``) and is signed by the device key (ECDSA P-256, SHA-256, DER).
All numbers are integers, so the canonical form is the same in every language.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass

from . import FORMAT_VERSION
from .canonical import ZERO_HASH, b64d, b64e, canonical, sha256_hex

OPEN, SEGMENT, CLOSE = "open", "segment", "close"
KINDS = (OPEN, SEGMENT, CLOSE)


def new_session_id() -> str:
    return str(uuid.uuid4())


def _common(kind: str, session: str, seq: int, prev: str, device_key: str, wall_us: int, mono_us: int, receipt):
    return {
        "v": FORMAT_VERSION,
        "kind": kind,
        "session": session,
        "seq": seq,
        "prev": prev,
        "device_key": device_key,
        "wall_us": wall_us,
        "mono_us": mono_us,
        "receipt": receipt,
    }


def open_header(
    *, session: str, device_key: str, server_key: str, sealed_key: dict, alert: str | None,
    wall_us: int, mono_us: int, segment_seconds: int, receipt: str | None = None,
) -> dict:
    header = _common(OPEN, session, 0, ZERO_HASH, device_key, wall_us, mono_us, receipt)
    header.update(
        server_key=server_key,
        sealed_key=sealed_key,
        alert=alert,
        format={"container": "ogg", "codec": "opus", "rate": 16000, "channels": 1, "bitrate": 24000,
                "segment_seconds": segment_seconds},
    )
    return header


def segment_header(
    *, session: str, seq: int, prev: str, device_key: str, offset: int, audio: bytes, ciphertext: bytes,
    nonce: bytes, granule_start: int, granule_end: int, wall_us: int, mono_us: int, receipt: str | None,
) -> dict:
    header = _common(SEGMENT, session, seq, prev, device_key, wall_us, mono_us, receipt)
    header.update(
        offset=offset,
        audio_len=len(audio),
        audio_sha256=sha256_hex(audio),
        cipher_len=len(ciphertext),
        cipher_sha256=sha256_hex(ciphertext),
        nonce=b64e(nonce),
        granule_start=granule_start,
        granule_end=granule_end,
    )
    return header


def close_header(
    *, session: str, seq: int, prev: str, device_key: str, stream_len: int, stream_sha256: str,
    segments: int, reason: str, wall_us: int, mono_us: int, receipt: str | None,
) -> dict:
    header = _common(CLOSE, session, seq, prev, device_key, wall_us, mono_us, receipt)
    header.update(stream_len=stream_len, stream_sha256=stream_sha256, segments=segments, reason=reason)
    return header


@dataclass(frozen=True)
class SealedUpload:
    """One record ready to leave the device: header, signature and (for a segment) the
    ciphertext. This is what the station's durable queue stores, as ``to_json()``."""

    header: dict
    signature: bytes
    ciphertext: bytes | None = None

    @property
    def header_bytes(self) -> bytes:
        return canonical(self.header)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.header_bytes)

    @property
    def session(self) -> str:
        return self.header["session"]

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def kind(self) -> str:
        return self.header["kind"]

    def to_json(self) -> dict:
        body = {"header": copy.deepcopy(self.header), "signature": b64e(self.signature)}
        if self.ciphertext is not None:
            body["ciphertext"] = b64e(self.ciphertext)
        return body

    @classmethod
    def from_json(cls, body: dict) -> "SealedUpload":
        ct = body.get("ciphertext")
        return cls(body["header"], b64d(body["signature"]), None if ct is None else b64d(ct))

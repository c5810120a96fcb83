"""Server-side checks of an uploaded record, pure: what the server holds for the session
comes in as a ``Known`` snapshot, the verdict goes out. The Django app stores it.

Every refusal is an ``IntakeError`` naming the field and saying whether a retry can
succeed (``retry``: the predecessor has not arrived yet) or not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from . import crypto
from .canonical import b64d, canonical, sha256_hex
from .records import CLOSE, OPEN, SEGMENT
from .verifier import header_problems


class IntakeError(Exception):
    def __init__(self, code: str, field: str, message: str, status: int = 400, retry: bool = False):
        super().__init__(message)
        self.code, self.field, self.message, self.status, self.retry = code, field, message, status, retry


@dataclass
class Known:
    """What the server already holds for one session."""

    records: dict[str, dict] = field(default_factory=dict)  # header sha256 -> header
    ciphertext_of: Callable[[str], bytes] | None = None  # header sha256 -> ciphertext as received

    @property
    def open_header(self) -> dict | None:
        return next((h for h in self.records.values() if h["kind"] == OPEN), None)

    def with_seq(self, seq: int) -> list[dict]:
        return [h for h in self.records.values() if h["seq"] == seq]


@dataclass(frozen=True)
class Verdict:
    header: dict
    header_bytes: bytes
    sha256: str
    signature: bytes
    ciphertext: bytes | None
    duplicate: bool = False
    conflict: bool = False


def parse(body) -> tuple[dict, bytes, bytes | None]:
    if not isinstance(body, dict):
        raise IntakeError("invalid", "body", "the body must be a JSON object")
    header = body.get("header")
    problems = header_problems(header)
    if problems:
        name, message = problems[0]
        raise IntakeError("invalid", f"header.{name}", f"header field {name}: {message}", 422)
    try:
        signature = b64d(body.get("signature"))
    except ValueError:
        raise IntakeError("invalid", "signature", "the signature must be base64", 422) from None
    ciphertext = body.get("ciphertext")
    if header["kind"] == SEGMENT:
        try:
            ciphertext = b64d(ciphertext)
        except ValueError:
            raise IntakeError("invalid", "ciphertext", "a segment carries its ciphertext in base64", 422) from None
    elif ciphertext is not None:
        raise IntakeError("invalid", "ciphertext", "only segments carry a ciphertext", 422)
    return header, signature, ciphertext


def check(
    body, *, device_public_key, seal_key: crypto.SealKey, known: Known, max_cipher_bytes: int,
) -> Verdict:
    """Check one upload against the device key and what the session already holds."""
    header, signature, ciphertext = parse(body)
    device_fp = crypto.fingerprint(device_public_key)
    if header["device_key"] != device_fp:
        raise IntakeError("device_key", "header.device_key",
                          "the record was not made with this device's registered key", 403)
    data = canonical(header)
    if not crypto.verify_device_signature(device_public_key, signature, data):
        raise IntakeError("signature", "signature", "the signature does not verify with the device key")
    digest = sha256_hex(data)
    if ciphertext is not None:
        if len(ciphertext) > max_cipher_bytes:
            raise IntakeError("oversized", "ciphertext", f"the segment exceeds {max_cipher_bytes} bytes", 413)
        if len(ciphertext) != header["cipher_len"] or sha256_hex(ciphertext) != header["cipher_sha256"]:
            raise IntakeError("hash", "header.cipher_sha256", "the ciphertext does not match its signed length and SHA-256")
    if digest in known.records:
        return Verdict(header, data, digest, signature, ciphertext, duplicate=True)
    conflict = bool(known.with_seq(header["seq"]))

    if header["kind"] == OPEN:
        if header["server_key"] != seal_key.fingerprint:
            raise IntakeError("server_key", "header.server_key", "the session key is sealed to another server key", 409)
        try:
            seal_key.unseal(header["session"], header["sealed_key"])
        except crypto.CryptoError:
            raise IntakeError("sealed_key", "header.sealed_key", "the session key does not unseal") from None
        return Verdict(header, data, digest, signature, ciphertext, conflict=conflict)

    opened = known.open_header
    if opened is None:
        raise IntakeError("predecessor_missing", "header.prev", "the open record of this session has not arrived", 409, True)
    previous = known.records.get(header["prev"])
    if previous is None:
        if known.with_seq(header["seq"] - 1):
            raise IntakeError("chain", "header.prev", f"prev is not the hash of record {header['seq'] - 1}", 409)
        raise IntakeError("predecessor_missing", "header.prev", f"record {header['seq'] - 1} has not arrived yet", 409, True)
    if previous["seq"] != header["seq"] - 1 or previous["kind"] == CLOSE:
        raise IntakeError("chain", "header.seq", f"seq {header['seq']} cannot follow record {previous['seq']}", 409)
    if any(h["kind"] == CLOSE for h in known.records.values()) and not conflict:
        raise IntakeError("closed", "header.seq", "the session is already closed", 409)

    end = previous["offset"] + previous["audio_len"] if previous["kind"] == SEGMENT else 0
    if header["kind"] == SEGMENT:
        if header["offset"] != end:
            raise IntakeError("chain", "header.offset", f"the segment starts at {header['offset']}, not at {end}", 409)
        root = seal_key.unseal(opened["session"], opened["sealed_key"])
        key = crypto.segment_key_at(root, header["seq"])
        try:
            audio = crypto.decrypt_segment(key, b64d(header["nonce"]), header["session"], header["seq"], ciphertext)
        except crypto.CryptoError:
            raise IntakeError("hash", "ciphertext", "the segment does not decrypt with its session key") from None
        if len(audio) != header["audio_len"] or sha256_hex(audio) != header["audio_sha256"]:
            raise IntakeError("hash", "header.audio_sha256", "the audio does not match its signed length and SHA-256")
    else:  # close
        if header["stream_len"] != end or header["segments"] != header["seq"] - 1:
            raise IntakeError("chain", "header.stream_len", "the close record does not match the segments received", 409)
        if known.ciphertext_of is not None:
            stream = hashlib.sha256()
            for _header, audio in chain_audio(known, header["prev"], seal_key):
                stream.update(audio)
            if stream.hexdigest() != header["stream_sha256"]:
                raise IntakeError("hash", "header.stream_sha256", "the stream does not match its signed SHA-256")
    return Verdict(header, data, digest, signature, ciphertext, conflict=conflict)


def chain_audio(known: Known, last_sha256: str, seal_key: crypto.SealKey):
    """(header, audio) of every segment on the chain ending at ``last_sha256``, in order."""
    chain = []
    cursor = known.records.get(last_sha256)
    while cursor is not None and cursor["kind"] != OPEN:
        chain.append((header_sha256(cursor), cursor))
        cursor = known.records.get(cursor["prev"])
    if cursor is None:
        raise IntakeError("chain", "header.prev", "the chain does not go back to the open record", 409)
    chain_key = crypto.first_chain_key(seal_key.unseal(cursor["session"], cursor["sealed_key"]))
    for digest, h in reversed(chain):
        if h["kind"] != SEGMENT:
            continue
        key, chain_key = crypto.segment_key(chain_key), crypto.next_chain_key(chain_key)
        yield h, crypto.decrypt_segment(key, b64d(h["nonce"]), h["session"], h["seq"], known.ciphertext_of(digest))


def header_sha256(header: dict) -> str:
    return sha256_hex(canonical(header))

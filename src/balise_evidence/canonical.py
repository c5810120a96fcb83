"""Canonical JSON (RFC 8785) and the small encodings every record uses."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import rfc8785

ZERO_HASH = "0" * 64


def canonical(obj: Any) -> bytes:
    """The RFC 8785 (JCS) serialisation of a JSON value: the bytes that get signed."""
    return rfc8785.dumps(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    """Strict standard base64 (no whitespace, correct padding); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text.encode("ascii"), validate=True)

"""The recording hint: which of a device's alerts it must go on recording and tracking
although they left its open list, i.e. the alerts cancelled under the duress PIN that the
association has not closed yet.

Every answer a device gets reads the same after a cancel and after a duress cancel, byte
for byte: whoever holds the device, its token or its traffic must not learn which PIN was
typed. The hint keeps that: the server seals it to the device's registered evidence key
(``crypto.seal_to_device``) in every heartbeat reply of a device that has one, padded to
one size, with fresh randomness each time; an empty list and a full one look alike.
Only the device key opens it.
"""

from __future__ import annotations

import json

from . import crypto
from .canonical import b64d, b64e

AAD = b"balise recording hint v1"
SIZE = 1024  # bytes of plaintext, always: room for MAX_ALERTS client ids
MAX_ALERTS = 16


def seal(device_public_key, client_ids: list[str]) -> str:
    data = json.dumps({"record": sorted(client_ids)[:MAX_ALERTS]}, separators=(",", ":")).encode()
    return b64e(crypto.seal_to_device(device_public_key, data.ljust(SIZE), AAD))


def open_hint(device_key: crypto.DeviceKey, text: str) -> list[str]:
    """The client ids the hint lists; ValueError if it is not one sealed to this key."""
    try:
        data = json.loads(device_key.open_sealed(b64d(text), AAD))
        ids = data["record"]
    except (crypto.CryptoError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a recording hint for this device ({exc})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("not a recording hint for this device")
    return ids

"""How a provider signs what it tells Balise back (SMS replies, call status, keypad).

Balise's own scheme, for the console provider and any webhook gateway:

    X-Balise-Timestamp: <Unix time, seconds>
    X-Balise-Signature: <hex HMAC-SHA256(secret, "<timestamp>\\n<METHOD>\\n<path?query>\\n" + body)>

The signature covers the time, the method, the path (with its query: a call's URL holds
its token, so a signature made for one call is worthless for another) and the exact
body bytes. Balise refuses a timestamp more than BALISE_INBOUND_MAX_SKEW seconds away
from its clock, and the same signature twice (see balise.inbound.signatures).

The secret is BALISE_INBOUND_SECRET; when it is not set, one derived from the install's
secret key (BALISE_SECRET_KEY, or the one generated in the data directory): the console
provider of a fresh install signs its simulated calls' callbacks with it, and nobody
without the secret key can. A gateway outside Balise needs BALISE_INBOUND_SECRET set.

Nothing here imports above the providers layer.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Balise-Timestamp"
SIGNATURE_HEADER = "X-Balise-Signature"
_DERIVATION = b"balise.inbound.secret.v1"


def inbound_secret() -> bytes:
    """The secret inbound callbacks are signed with (see the module's docstring)."""
    from django.conf import settings

    if settings.INBOUND_SECRET:
        return settings.INBOUND_SECRET.encode()
    return hmac.new(settings.SECRET_KEY.encode(), _DERIVATION, hashlib.sha256).hexdigest().encode()


def signature(secret: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    signed = f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def sign(method: str, path: str, body: bytes, *, secret: bytes | None = None, now: float | None = None) -> dict[str, str]:
    """The headers that make a callback to PATH (path and query, no host) acceptable."""
    timestamp = str(int(time.time() if now is None else now))
    key = inbound_secret() if secret is None else secret
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(key, timestamp, method, path, body)}

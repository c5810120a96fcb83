"""Verifying the JWTs the Flic app sends: webhook tokens (one per press) and webview
tokens (her page opened from the Flic app).

The key is the button's association's: its algorithm is the only one accepted (an ES256
association never accepts an HS256 token, whatever its header says, so a public key can
never be used as an HMAC secret), `none` never is, and `exp` is required.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings

from balise.devices.models import Device
from balise.integrations.flic.models import FlicButton, FlicSettings
from balise.settings import env

log = logging.getLogger(__name__)

# The P-256 keys Flic publishes for the tokens its backend signs (ES256): one for webhook
# requests, one for webview requests (flic-cloud-buttons-documentation, README).
FLIC_WEBHOOK_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtOBY/7kJlAPE19qweawQlQah10rO
Qzhaxfjlen4RasPBJtlQb8ygoBW1lMMvahxZHMKMTjehvqLk+hcLxPyORg==
-----END PUBLIC KEY-----"""
FLIC_WEBVIEW_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqHF1y2ztTcdfknnISSozf+hdoXi6
ylzLDGasj7I5TbNqGPWse6lo6kq+JHcbLhbVptAwn0BB0b0m+Y2+hpnhcg==
-----END PUBLIC KEY-----"""

ALGORITHMS = ("ES256", "HS256")
# A Flic token is a few hundred bytes; anything much larger is refused unread.
MAX_TOKEN_CHARS = 4096
# HS256 secrets shorter than this are refused (RFC 7518: at least the hash size).
MIN_SECRET_BYTES = 32


class FlicError(Exception):
    """A request refused; `code` is stable, the message says why without any secret."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        # What the server's log says when it differs from the answer (see verify).
        self.reason = reason or code


def secret_variable(association) -> str:
    """BALISE_FLIC_SECRET_<SLUG>: where an HS256 association's shared secret lives."""
    return "BALISE_FLIC_SECRET_" + re.sub(r"[^A-Z0-9]", "_", association.slug.upper())


@functools.lru_cache(maxsize=64)
def _public_key(pem: str):
    return load_pem_public_key(pem.encode())


def verification_key(config: FlicSettings, purpose: str, claims: dict | None = None):
    if config.algorithm == FlicSettings.Algorithm.HS256:
        secret = env(secret_variable(config.association))
        if len(secret.encode()) < MIN_SECRET_BYTES:
            log.error("flic: association %s uses HS256 but its secret is missing or shorter than %d bytes",
                      config.association_id, MIN_SECRET_BYTES)
            raise _unverified("no_secret", claims)
        return secret
    pem = config.webview_public_key if purpose == "webview" else config.public_key
    pem = (pem or "").strip() or (FLIC_WEBVIEW_PUBLIC_KEY if purpose == "webview" else FLIC_WEBHOOK_PUBLIC_KEY)
    try:
        return _public_key(pem)
    except (ValueError, TypeError):
        log.error("flic: association %s has an unreadable public key", config.association_id)
        raise _unverified("unreadable_key", claims) from None


def settings_for(association) -> FlicSettings:
    """The association's Flic settings (the defaults when it has none), read once per
    request: kept on the association object the request loaded."""
    config = getattr(association, "_flic_settings", None)
    if config is None:
        config = FlicSettings.objects.filter(association=association).first() or FlicSettings(association=association)
        association._flic_settings = config
    return config


def _find_button(serial, button_uuid) -> FlicButton | None:
    buttons = FlicButton.objects.select_related("device", "device__association", "device__holder")
    if isinstance(serial, str) and serial.strip():
        found = buttons.filter(device__kind=Device.Kind.FLIC, device__hardware_id=serial.strip().upper()).first()
        if found is not None:
            return found
    if isinstance(button_uuid, str) and button_uuid.strip():
        return buttons.filter(device__kind=Device.Kind.FLIC, uuid=button_uuid.strip().lower()).first()
    return None


def button_ref(serial, button_uuid=None) -> str:
    """What the log says of the button a token names: a keyed digest, never the serial
    number or the uuid in clear (an administrator can compute it for a known serial to
    see why its presses are refused)."""
    named = serial if isinstance(serial, str) and serial.strip() else button_uuid
    if not isinstance(named, str) or not named.strip():
        return "none"
    digest = hmac.new(settings.SECRET_KEY.encode(), named.strip().upper().encode(), hashlib.sha256)
    return digest.hexdigest()[:12]


def _unverified(reason: str, claims: dict | None = None) -> FlicError:
    """Every refusal before the token's signature is verified, whatever its reason: one
    status, one body. A different answer for an unknown serial, for an algorithm that is
    not the button's association's, or for a bad signature would let whoever holds her
    button learn, by posting its serial number, that Balise knows it. The reason and a
    digest of the button go to the server's log only."""
    claims = claims if isinstance(claims, dict) else {}
    ref = button_ref(claims.get("buttonSerialNumber"), claims.get("buttonUuid"))
    return FlicError(401, "invalid_token", "the token cannot be verified", field="token",
                     reason=f"{reason} (button {ref})")


def verify(token, purpose: str = "webhook") -> tuple[FlicButton, dict]:
    """The button a token names and its verified claims; FlicError otherwise."""
    if not isinstance(token, str) or not token:
        raise FlicError(400, "invalid", "a token is required", field="token")
    if len(token) > MAX_TOKEN_CHARS:
        raise FlicError(413, "too_large", "the token is too large", field="token")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        # Says nothing of any button: the token cannot even be read.
        raise FlicError(400, "malformed_token", "the token is not a JWT", field="token") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise _unverified("bad_algorithm", unverified)
    # Which button (hence which association's key) is only a hint until the signature
    # is checked with that key.
    button = _find_button(unverified.get("buttonSerialNumber"), unverified.get("buttonUuid"))
    if button is None:
        raise _unverified("unknown_button", unverified)
    config = settings_for(button.device.association)
    if algorithm != config.algorithm:
        raise _unverified("algorithm_mismatch", unverified)
    key = verification_key(config, purpose, unverified)
    try:
        claims = jwt.decode(
            token, key, algorithms=[config.algorithm], leeway=settings.FLIC_JWT_LEEWAY_SECONDS,
            options={"require": ["exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:  # PyJWT checks the signature before the claims
        raise FlicError(401, "expired", "the token has expired", field="token") from None
    except jwt.MissingRequiredClaimError:
        raise FlicError(401, "invalid_token", "the token has no expiry", field="exp") from None
    except (jwt.InvalidTokenError, jwt.exceptions.InvalidKeyError):
        raise _unverified("bad_signature", unverified) from None
    _check_identity(button, claims)
    if button.device.status in (Device.Status.LOST, Device.Status.RETIRED):
        raise FlicError(403, "device_inactive", "this button is no longer in service")
    return button, claims


def _check_identity(button: FlicButton, claims: dict) -> None:
    """A token whose serial and uuid name two different buttons is refused."""
    serial, button_uuid = claims.get("buttonSerialNumber"), claims.get("buttonUuid")
    if isinstance(serial, str) and serial.strip() and serial.strip().upper() != button.device.hardware_id:
        raise _unverified("two_buttons", claims)
    if (isinstance(button_uuid, str) and button_uuid.strip() and button.uuid
            and button_uuid.strip().lower() != button.uuid):
        raise _unverified("two_buttons", claims)

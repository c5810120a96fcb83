"""Pairing a device from the person's file: a one-time code, valid PAIRING_CODE_TTL
seconds, that the device exchanges once for its token (POST /api/v1/pair).

The code is 10 characters from an alphabet without look-alikes (about 49 bits); only a
keyed hash of it is stored. Wrong codes are counted per source and overall, and past
a limit the exchange answers "too many attempts" without looking at the code, so that
guessing one within its 15 minutes is hopeless. A new token revokes the device's
earlier ones: a re-paired station's old token is refused from then on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from balise.console.models import PairingCode, PairingFailure
from balise.devices.actions import issue_token, revoke_tokens
from balise.devices.models import Device
from balise.throttle import count_failure, too_many

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10


class PairingError(Exception):
    def __init__(self, code: str, status: int):
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Paired:
    device: Device
    token: str


def normalize(code: str) -> str:
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def display(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def _hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), b"pairing:" + normalize(code).encode(), hashlib.sha256).hexdigest()


def create_code(device: Device, user, now: datetime | None = None) -> str:
    """A new code for DEVICE (earlier unused ones stop working); returned once, never stored."""
    now = now or timezone.now()
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    with transaction.atomic():
        PairingCode.objects.filter(device=device, used_at__isnull=True).update(expires_at=now)
        PairingCode.objects.create(device=device, code_hash=_hash(code), created_by=user, created_at=now,
                                   expires_at=now + timedelta(seconds=settings.PAIRING_CODE_TTL))
    return code


def _limited(source: str, now: datetime) -> bool:
    return too_many(PairingFailure, source, now, timedelta(seconds=settings.PAIRING_CODE_TTL),
                    settings.PAIRING_MAX_FAILURES, settings.PAIRING_MAX_FAILURES_TOTAL)


def _fail(source: str, now: datetime, code: str, status: int) -> PairingError:
    count_failure(PairingFailure, source, now)
    return PairingError(code, status)


def exchange(code: str, source: str, now: datetime | None = None) -> Paired:
    """The device's side: CODE for a new token. Raises PairingError (rate_limited,
    invalid_code, expired_code)."""
    now = now or timezone.now()
    if _limited(source, now):
        raise PairingError("rate_limited", 429)
    if len(normalize(code)) != CODE_LENGTH:
        raise _fail(source, now, "invalid_code", 400)
    with transaction.atomic():
        row = (PairingCode.objects.select_for_update(no_key=True).select_related("device", "device__association")
               .filter(code_hash=_hash(code)).first())
        if row is None or row.used_at is not None:
            failed = "invalid_code"
        elif row.expires_at <= now:
            failed = "expired_code"
        else:
            row.used_at = now
            row.save(update_fields=["used_at"])
            device = row.device
            revoke_tokens(device)
            token = issue_token(device)
            if device.holder_id is not None and device.status == Device.Status.STOCK:
                device.status = Device.Status.ASSIGNED
                device.save(update_fields=["status"])
            return Paired(device, token)
    raise _fail(source, now, failed, 410 if failed == "expired_code" else 400)

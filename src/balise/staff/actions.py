"""Staff second factor: enrol an authenticator (TOTP), confirm it with a code, issue
single-use recovery codes, verify a login, reset a lost factor."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django_otp import devices_for_user, verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

RECOVERY_CODES = 10
TOTP_NAME = "authenticator"
RECOVERY_NAME = "recovery codes"


def pending_authenticator(user) -> TOTPDevice:
    """The authenticator USER is enrolling: the same secret until she confirms it."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)


def normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


@dataclass
class Verification:
    device: object | None
    throttled: bool = False


def _attempt(device, code: str) -> Verification:
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        return Verification(None, throttled=True)
    return Verification(verify_token(device.user, device.persistent_id, code))


def confirm_authenticator(user, code: str) -> Verification:
    """Confirm the pending authenticator with its first code; on success it becomes the
    user's only authenticator and her recovery codes are renewed (see issue_recovery_codes)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        return Verification(None)
    result = _attempt(device, normalise(code))
    if result.device is not None:
        with transaction.atomic():
            TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
    return result


def issue_recovery_codes(user, count: int = RECOVERY_CODES) -> list[str]:
    """New single-use recovery codes (the old ones stop working), shown to her once."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(count)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes


def verify_second_factor(user, code: str) -> Verification:
    """A six-digit code is checked against her authenticator, anything else against her
    recovery codes (a recovery code that matches is used up). Each device throttles its
    own failures (django_otp: growing delays)."""
    code = normalise(code)
    kind = TOTPDevice if code.isdigit() and len(code) == 6 else StaticDevice
    throttled = False
    for device in devices_for_user(user):
        if not isinstance(device, kind):
            continue
        result = _attempt(device, code)
        if result.device is not None:
            return result
        throttled = throttled or result.throttled
    return Verification(None, throttled=throttled)


def remaining_recovery_codes(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def reset_second_factor(user) -> int:
    """Remove every device of USER (lost phone): she enrols again at her next login.
    Returns how many devices were removed."""
    removed = 0
    with transaction.atomic():
        for model in (TOTPDevice, StaticDevice):
            removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    return removed


def base32_secret(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it when typed in."""
    from base64 import b32encode

    return b32encode(device.bin_key).decode().rstrip("=")


def grouped(text: str, size: int = 4) -> str:
    return " ".join(text[i:i + size] for i in range(0, len(text), size))

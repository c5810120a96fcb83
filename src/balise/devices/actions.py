"""Device operations: pairing (issuing a token), revoking, authenticating, heartbeats."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from balise.db import for_update
from balise.devices.models import Device, DeviceCredential, hash_token


def issue_token(device: Device) -> str:
    """Create a credential for DEVICE and return the token; only its hash is stored."""
    token = "bal_" + secrets.token_urlsafe(32)
    DeviceCredential.objects.create(device=device, token_hash=hash_token(token), prefix=token[:8])
    return token


def revoke_tokens(device: Device) -> int:
    return device.credentials.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def reassign(device: Device, holder) -> int:
    """Hand DEVICE to HOLDER (a Person, or None to take it back). A token follows its
    holder: when the holder changes, every token of the device is revoked, so that it
    never speaks for, nor sees the alerts of, the previous holder; it is paired again
    (issue_token) for the new one. Returns the number of tokens revoked."""
    with transaction.atomic():
        current = for_update(Device.objects).get(pk=device.pk)
        if current.holder_id == getattr(holder, "pk", None):
            return 0
        current.holder = holder
        current.clean()  # (a holder of another association is refused)
        current.save(update_fields=["holder"])
        device.holder = holder
        return revoke_tokens(current)


def authenticate_token(token: str) -> Device | None:
    if not token or len(token) > 200:
        return None
    credential = (
        DeviceCredential.objects.select_related("device", "device__association", "device__holder")
        .filter(token_hash=hash_token(token), revoked_at__isnull=True)
        .first()
    )
    if credential is None or credential.device.status in (Device.Status.LOST, Device.Status.RETIRED):
        return None
    return credential.device


def button_states(previous, reported: list[dict], now) -> list[dict]:
    """The buttons' state to keep from a heartbeat: each reported button with the time it
    last connected or dropped — the station's `since` if it sent one (never in the
    future), else the time kept from an earlier heartbeat that saw the same state, else
    NOW (the first heartbeat that reports the change)."""
    known = {b.get("hardware_id"): b for b in previous if isinstance(b, dict)} if isinstance(previous, list) else {}
    states = []
    for b in reported:
        since = b.get("since")
        if since is not None:
            since = min(since, now).isoformat()
        else:
            before = known.get(b["hardware_id"])
            if before is not None and before.get("connected") == b["connected"] and before.get("since"):
                since = before["since"]
            else:
                since = now.isoformat()
        states.append({"hardware_id": b["hardware_id"], "connected": b["connected"], "since": since})
    return states


def record_heartbeat(device: Device, *, battery_percent=None, button_connected=None, station_version="",
                     modem=None, microphone=None, buttons=None) -> None:
    """One UPDATE by primary key, outside any transaction (a single statement needs none):
    a region's devices beat thousands of times a second (issue 16). MODEM and MICROPHONE
    ("ok", "unusable", "absent") and BUTTONS ([{"hardware_id", "connected", "since"}]) are
    what a station says of itself; None leaves what is known unchanged."""
    now = timezone.now()
    fields = {"last_seen_at": now}
    if battery_percent is not None:
        fields["battery_percent"] = battery_percent
    if button_connected is not None:
        fields["button_connected"] = button_connected
        if button_connected:
            # A plain value in the same UPDATE (nothing read): a disconnection is counted
            # from the last heartbeat that saw the button connected.
            fields["button_seen_at"] = now
    if station_version:
        fields["station_version"] = station_version
    if modem is not None:
        fields["modem_state"] = modem
    if microphone is not None:
        fields["microphone_state"] = microphone
    if buttons is not None:
        # DEVICE is the row read when its token was checked: its earlier button states.
        fields["buttons_state"] = button_states(device.buttons_state, buttons, now)
    Device.objects.filter(pk=device.pk).update(**fields)

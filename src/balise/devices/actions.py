"""Device operations: pairing (issuing a token), revoking, authenticating, heartbeats."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from balise.db import column, for_update, rows
from balise.devices.models import Device, DeviceCredential, hash_token


# A device in these states speaks for no one.
SILENCED = (Device.Status.LOST, Device.Status.RETIRED)


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
    if credential is None or credential.device.status in SILENCED:
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


@dataclass(frozen=True)
class Beat:
    """The device a heartbeat came from, as what follows needs it (named as a Device's
    fields: supervision's reports take either)."""

    pk: int
    association_id: int
    holder_id: int | None


def record_heartbeat(who: Device | str, *, battery_percent=None, button_connected=None, station_version="",
                     modem=None, microphone=None, buttons=None) -> Beat | None:
    """Record a heartbeat in one indexed UPDATE ... RETURNING, outside any transaction,
    with no model object loaded: a region's devices beat thousands of times a second
    (issue 16). WHO is the device (its token already checked) or its bearer token,
    checked by the same statement (None when it is no usable device's). MODEM and
    MICROPHONE ("ok", "unusable", "absent") and BUTTONS ([{"hardware_id", "connected",
    "since"}]) are what a station says of itself; None leaves what is known unchanged.
    A station's buttons take a second UPDATE: their times follow the earlier states,
    which the first one returns."""
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
    if isinstance(who, Device):
        by_token, params = False, [who.pk]
    else:
        if not who or len(who) > 200:
            return None
        by_token, params = True, [hash_token(who), *SILENCED]
    row = _update_device(fields, params, by_token=by_token,
                         returning=("id", "association_id", "holder_id", "buttons_state"))
    if row is None:
        return None
    device_id, association_id, holder_id, previous = row
    if buttons is not None:
        previous = Device._meta.get_field("buttons_state").from_db_value(previous, None, connection)
        _update_device({"buttons_state": button_states(previous, buttons, now)}, [device_id])
    return Beat(device_id, association_id, holder_id)


def _update_device(fields: dict, params: list, *, by_token: bool = False, returning=("id",)):
    """UPDATE the device row (its id, or BY_TOKEN: its live token's hash and the statuses
    it must not be in), each value prepared by its own field (times, JSON) as the ORM
    would; the RETURNING row, or None when no device matched."""
    meta = Device._meta
    values = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
    found = rows(_update_sql(connection.vendor, tuple(fields), by_token, returning), [*values, *params])
    return found[0] if found else None


@functools.cache
def _update_sql(vendor: str, names: tuple[str, ...], by_token: bool, returning: tuple[str, ...]) -> str:
    """The heartbeat's UPDATE for one shape (the fields it sets, how it finds the device),
    built once: building it cost more than the database running it."""
    q, device, credential = connection.ops.quote_name, Device._meta, DeviceCredential._meta
    if by_token:
        where = (f"{column(device, 'id')} = (SELECT {column(credential, 'device')}"
                 f" FROM {q(credential.db_table)} WHERE {column(credential, 'token_hash')} = %s"
                 f" AND {column(credential, 'revoked_at')} IS NULL)"
                 f" AND {column(device, 'status')} NOT IN ({', '.join(['%s'] * len(SILENCED))})")
    else:
        where = f"{column(device, 'id')} = %s"
    assignments = ", ".join(f"{column(device, name)} = %s" for name in names)
    return (f"UPDATE {q(device.db_table)} SET {assignments} WHERE {where}"
            f" RETURNING {', '.join(column(device, name) for name in returning)}")

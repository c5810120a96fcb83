"""Flic operations: a press becomes an alert through the device API's own action."""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from pydantic import ValidationError

from balise.alerts.actions import AlertError, FixIn, create_alert
from balise.alerts.models import Alert, JoinedPress
from balise.api import schemas
from balise.devices.models import Device
from balise.integrations.flic.models import BatteryStatus, ClickType, FlicButton
from balise.integrations.flic.tokens import FlicError, settings_for, verify

log = logging.getLogger(__name__)

# Client ids of Flic presses: uuid5(this, "<device id>|<pressedAt in UTC>"), so that the
# same press retried by Flic's proxy finds the alert it created.
PRESS_NAMESPACE = uuid.UUID("5f1c0b7e-3a52-4f44-9a0e-6d1f2c7b8a91")
# The device API's gesture names (Alert.gesture is short).
GESTURES = {ClickType.CLICK: "single", ClickType.DOUBLE_CLICK: "double", ClickType.HOLD: "long"}
# Device health wants a percentage; Flic reports bands (low < 30 %, medium 30-49 %,
# high >= 50 %): the band's floor is stored, never more than the button may have.
BATTERY_FLOOR = {BatteryStatus.LOW: 0, BatteryStatus.MEDIUM: 30, BatteryStatus.HIGH: 50}


@dataclass(frozen=True)
class Press:
    alert: Alert
    created: bool
    message: str
    # The press joined ALERT, an alert of hers already open, instead of raising its own.
    joined: bool = False


def pressed_at(claims: dict) -> datetime | None:
    """When she pressed, by the phone's clock, in UTC; None when pressedAt is missing,
    has no offset, or is out of the device API's range (balise.api.schemas.moment: not
    before 2020, at most 24 h ahead, offset within +-14:00). The press is never refused
    for it: the caller then dates it with the server's receipt time, as the station's
    alert is when the device API refuses its times (it is sent again without them)."""
    raw = claims.get("pressedAt")
    try:
        value = parse_datetime(raw) if isinstance(raw, str) else None
        if value is None or value.tzinfo is None:
            return None
        return schemas.moment(value)
    except ValueError:  # e.g. an offset of 24 h or more, a 13th month, year 10000 in UTC
        return None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def location(claims: dict, at: datetime) -> FixIn | None:
    """The phone's position (CLOUD_LOCATION). Flic documents the action, not the claim's
    shape: `latitude`/`longitude`(/`accuracy`) at the top level or in a `location`
    object, `lat`/`lon`/`lng` accepted. The device API's ranges apply (its FixIn schema:
    latitude, longitude, accuracy in metres); a position outside them is left out, and
    a malformed position never refuses the press."""
    source = claims.get("location") if isinstance(claims.get("location"), dict) else claims
    lat = _number(source.get("latitude", source.get("lat")))
    lon = _number(source.get("longitude", source.get("lon", source.get("lng"))))
    if lat is None or lon is None:
        return None
    accuracy = _number(source.get("accuracy", source.get("horizontalAccuracy", source.get("accuracy_m"))))
    try:
        fix = schemas.FixIn(lat=lat, lon=lon, accuracy_m=accuracy, recorded_at=at)
    except ValidationError:
        return None
    return FixIn(lat=fix.lat, lon=fix.lon, accuracy_m=fix.accuracy_m, recorded_at=at, source="phone",
                 client_id=uuid.uuid5(PRESS_NAMESPACE, f"fix|{lat}|{lon}|{at.isoformat()}"))


def battery(claims: dict) -> str:
    value = claims.get("buttonBatteryStatus")
    return value if value in BatteryStatus.values else BatteryStatus.UNKNOWN


def receive_press(token) -> Press:
    """Verify a webhook token and raise its alert (idempotent on button + pressedAt)."""
    button, claims = verify(token, "webhook")
    click = claims.get("clickType")
    if click not in ClickType.values:
        raise FlicError(400, "invalid", "clickType must be click, double_click or hold", field="clickType")
    device = button.device
    at = pressed_at(claims)
    if at is not None:
        client_id = uuid.uuid5(PRESS_NAMESPACE, f"{device.pk}|{at.astimezone(UTC).isoformat()}")
    else:
        # The phone's clock cannot be used: the press is dated when it arrived. Flic's
        # proxy retries with the same token, so the press id comes from the token's own
        # claims, and a retry still finds the alert the first attempt raised.
        log.warning("flic press: device %s, pressedAt unusable: dated on receipt", device.pk)
        at = timezone.now()
        client_id = uuid.uuid5(PRESS_NAMESPACE, f"{device.pk}|unusable|{claims.get('pressedAt')!r}|"
                                                f"{claims.get('exp')!r}")
    config = settings_for(button.device.association)
    kind = config.kind_for(click)
    fix = location(claims, at)
    try:
        alert, created = create_alert(device, client_id=client_id, kind=kind, gesture=GESTURES[click],
                                      triggered_at=at, fixes=[fix] if fix else [])
    except AlertError as exc:
        raise FlicError(exc.status, exc.code, str(exc), field=exc.field) from None
    # A press that joined an open alert has its own client id, and its gesture is its
    # JoinedPress's (the alert keeps the gesture of the press that raised it).
    joined = alert.client_id != client_id
    if not created:
        gesture = (JoinedPress.objects.filter(client_id=client_id).values_list("gesture", flat=True).first()
                   if joined else alert.gesture)
        if gesture != GESTURES[click]:
            # The same press cannot be two gestures: a forged or mixed-up replay.
            raise FlicError(409, "replay_conflict", "this press was already received with another gesture",
                            field="clickType")
    if created:
        record_health(button, claims, click=click, at=at, fix=fix, kind=kind)
    log.info("flic press: device %s, %s -> alert %s (%s)", device.pk, click, alert.pk,
             "retry" if not created else "joined" if joined else "new")
    return Press(alert, created, config.notification_text, joined)


def record_health(button: FlicButton, claims: dict, *, click: str | None = None, at: datetime | None = None,
                  fix: FixIn | None = None, kind: str = "") -> None:
    """Battery, last press and last position, from a press or a page opened in the app."""
    now = timezone.now()
    status = battery(claims)
    fields: dict = {"battery_status": status}
    if click:
        fields.update(last_pressed_at=at, last_click_type=click)
    if kind == "test":
        fields["last_test_at"] = at or now
    if fix is not None:
        fields.update(last_lat=fix.lat, last_lon=fix.lon, last_accuracy_m=fix.accuracy_m, last_located_at=fix.recorded_at)
    device_fields: dict = {"last_seen_at": now}
    if status in BATTERY_FLOOR:
        device_fields["battery_percent"] = BATTERY_FLOOR[status]
    learned = claims.get("buttonUuid")
    if not button.uuid and isinstance(learned, str) and UUID_RE.fullmatch(learned.strip()):
        # Registered by serial alone: the first verified token teaches its uuid.
        learned = learned.strip().lower()
        if not FlicButton.objects.filter(uuid=learned).exists():
            fields["uuid"] = learned

    def write() -> None:
        with transaction.atomic():
            FlicButton.objects.filter(pk=button.pk).update(**fields)
            Device.objects.filter(pk=button.device_id).update(**device_fields)

    try:
        write()
    except IntegrityError:  # the same uuid learned by another button at the same time
        fields.pop("uuid", None)
        write()


# Flic serial numbers look like BC44-B06243; the device manager's export (CSV, JSON or
# the Hub SDK's pairing data) carries one per button, with its 32-hex-digit uuid nearby.
SERIAL_RE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{6})\b", re.IGNORECASE)
UUID_RE = re.compile(r"\b([0-9a-f]{32})\b", re.IGNORECASE)
MAX_REGISTER = 5000


def parse_serials(text: str) -> list[tuple[str, str | None]]:
    """(serial, uuid or None) for every button named in TEXT, in order, once each: one
    serial per line, or a pasted export with a serial (and its uuid) per line."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        serials = SERIAL_RE.findall(line)
        uuids = UUID_RE.findall(line)
        for i, serial in enumerate(serials):
            serial = serial.upper()
            if serial not in found:
                found[serial] = uuids[i].lower() if len(uuids) == len(serials) else None
    return list(found.items())


@dataclass(frozen=True)
class Registered:
    created: list[str]
    already: list[str]


def register_buttons(association, text: str, holder=None) -> Registered:
    """Register the buttons named in TEXT to ASSOCIATION, in stock (or handed to HOLDER
    when there is one button); serials already known are left as they are."""
    buttons = parse_serials(text)
    if not buttons:
        raise ValueError("no serial number found")
    if len(buttons) > MAX_REGISTER:
        raise ValueError(f"at most {MAX_REGISTER} buttons at once")
    if holder is not None and (len(buttons) != 1 or holder.association_id != association.pk):
        raise ValueError("a person can be given one button of her own association")
    serials = [s for s, _ in buttons]
    known = set(Device.objects.filter(hardware_id__in=serials).values_list("hardware_id", flat=True))
    uuids_taken = set(FlicButton.objects.filter(uuid__in=[u for _, u in buttons if u]).values_list("uuid", flat=True))
    fresh = [(s, u) for s, u in buttons if s not in known]
    with transaction.atomic():
        devices = Device.objects.bulk_create([
            Device(association=association, kind=Device.Kind.FLIC, hardware_id=s, holder=holder,
                   status=Device.Status.ASSIGNED if holder else Device.Status.STOCK)
            for s, _ in fresh])
        if not connection.features.can_return_rows_from_bulk_insert:
            ids = dict(Device.objects.filter(hardware_id__in=[s for s, _ in fresh]).values_list("hardware_id", "pk"))
            for device in devices:
                device.pk = ids[device.hardware_id]
        FlicButton.objects.bulk_create([
            FlicButton(device=device, uuid=u if u and u not in uuids_taken else None)
            for device, (_, u) in zip(devices, fresh)])
    return Registered([s for s, _ in fresh], sorted(known))


def metadata(site_url: str) -> dict:
    """The JSON to paste into Flic's device manager (on a button, or on a button group)."""
    return {
        "__fcb_icon": f"{site_url}/static/flic/icon.png",
        "__fcb_webhook": f"{site_url}/integrations/flic/",
        "__fcb_webview": f"{site_url}/integrations/flic/page/",
        "__fcb_action": "CLOUD_LOCATION",
        "__fcb_name": str(_("My space")),
    }

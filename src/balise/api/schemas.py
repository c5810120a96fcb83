from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Literal

from django.conf import settings
from ninja import Schema
from pydantic import Field, field_validator


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class FixIn(Schema):
    id: uuid.UUID | None = None
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=1_000_000)
    recorded_at: datetime
    source: Literal["gps", "fixed", "network", "simulated", "unknown"] = "unknown"

    _aware = field_validator("recorded_at")(lambda cls, v: _aware(v))


class AlertIn(Schema):
    client_id: uuid.UUID
    kind: Literal["prevention", "emergency", "alarm", "test"]
    gesture: Literal["single", "double", "long", "triple", "api", ""] = ""
    triggered_at: datetime | None = None
    fixes: list[FixIn] = Field(default_factory=list, max_length=settings.API_MAX_FIXES_PER_BATCH)
    sms_sent_by_device: bool = False
    # Contacts the device already texted itself (GSM modem while offline): no SMS again.
    sms_sent_to_contacts: list[int] = Field(default_factory=list, max_length=5)

    _aware = field_validator("triggered_at")(lambda cls, v: _aware(v))


class FixesIn(Schema):
    fixes: list[FixIn] = Field(min_length=1, max_length=settings.API_MAX_FIXES_PER_BATCH)


class CancelIn(Schema):
    pin: str = Field(min_length=1, max_length=32)


class AlertOut(Schema):
    id: int
    client_id: uuid.UUID
    # Set when this press joined an alert of the same person already open (its client id).
    joined_to: uuid.UUID | None = None
    kind: str
    state: str
    acknowledged: bool
    created_at: datetime
    fixes: int


class FixesOut(Schema):
    accepted: int
    duplicates: int


class CancelOut(Schema):
    client_id: uuid.UUID
    state: Literal["cancelled"]


class ButtonIn(Schema):
    hardware_id: str = Field(max_length=64)
    connected: bool
    battery_percent: int | None = Field(default=None, ge=0, le=100)


class HeartbeatIn(Schema):
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    button_connected: bool | None = None
    station_version: str = Field(default="", max_length=40)
    buttons: list[ButtonIn] = Field(default_factory=list, max_length=10)


class OpenAlertOut(Schema):
    client_id: uuid.UUID
    kind: str
    state: str


class HeartbeatOut(Schema):
    server_time: datetime
    heartbeat_interval_s: int
    open_alerts: list[OpenAlertOut]


class PersonOut(Schema):
    display_name: str
    language: str


class ContactOut(Schema):
    id: int
    position: int
    name: str
    phone: str
    language: str
    consent: str


class AssociationOut(Schema):
    name: str
    on_call_number: str


class ContactsOut(Schema):
    person: PersonOut
    association: AssociationOut
    contacts: list[ContactOut]


class ErrorOut(Schema):
    error: str
    message: str

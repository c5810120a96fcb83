from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from django.conf import settings
from django.utils import timezone as django_timezone
from ninja import Schema
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

# What the server accepts at its edge; docs/device-api.md states the same ranges.
EARLIEST = datetime(2020, 1, 1, tzinfo=timezone.utc)
MAX_AHEAD = timedelta(hours=24)
MAX_OFFSET = timedelta(hours=14)  # the widest real UTC offset (Kiribati, +14:00)
# C0 and C1 control characters (NUL included) and lone surrogates: no device sends them,
# and PostgreSQL refuses NUL in text.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MULTILINE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def moment(value: datetime) -> datetime:
    """A device's clock reading: naive means UTC; refused outside [2020, now + 24 h]."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    offset = value.utcoffset()
    if offset is None or abs(offset) > MAX_OFFSET:
        raise ValueError("the UTC offset must be within -14:00 and +14:00")
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:30-14:00 is in year 10000 in UTC
        raise ValueError("the time must be after 2020-01-01 and at most 24 h ahead of the server") from None
    if not EARLIEST <= utc <= django_timezone.now() + MAX_AHEAD:
        raise ValueError("the time must be after 2020-01-01 and at most 24 h ahead of the server")
    return utc


def text(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def multiline_text(value: str) -> str:
    if MULTILINE_CONTROL.search(value):
        raise ValueError("control characters other than line breaks and tabs are not allowed")
    return value


def _not_text_or_bool(value):
    # JSON numbers only: no "12" read as 12, no true read as 1 (80.0 is still 80).
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON number")
    return value


Moment = Annotated[datetime, AfterValidator(moment)]
Text = Annotated[str, AfterValidator(text)]
MultilineText = Annotated[str, AfterValidator(multiline_text)]
JSON_NUMBER = BeforeValidator(_not_text_or_bool)
# Constraints before the validator: the OpenAPI schema then shows them as minimum/maximum.
Latitude = Annotated[float, Field(ge=-90, le=90), JSON_NUMBER]
Longitude = Annotated[float, Field(ge=-180, le=180), JSON_NUMBER]
Accuracy = Annotated[float, Field(ge=0, le=100_000), JSON_NUMBER]  # metres
Percent = Annotated[int, Field(ge=0, le=100), JSON_NUMBER]
# Database ids are positive 64-bit integers.
Id = Annotated[int, Field(ge=1, le=2**63 - 1), JSON_NUMBER]
Flag = Annotated[bool, Field(strict=True)]


class FixIn(Schema):
    id: uuid.UUID | None = None
    lat: Latitude
    lon: Longitude
    accuracy_m: Accuracy | None = None
    recorded_at: Moment
    source: Literal["gps", "fixed", "network", "simulated", "unknown"] = "unknown"


class AlertIn(Schema):
    client_id: uuid.UUID
    kind: Literal["prevention", "emergency", "alarm", "test"]
    gesture: Literal["single", "double", "long", "triple", "api", ""] = ""
    triggered_at: Moment | None = None
    fixes: list[FixIn] = Field(default_factory=list, max_length=settings.API_MAX_FIXES_PER_BATCH)
    sms_sent_by_device: Flag = False
    # Contacts the device already texted itself (GSM modem while offline): no SMS again.
    sms_sent_to_contacts: list[Id] = Field(default_factory=list, max_length=5)


class FixesIn(Schema):
    fixes: list[FixIn] = Field(min_length=1, max_length=settings.API_MAX_FIXES_PER_BATCH)


class CancelIn(Schema):
    pin: Text = Field(min_length=1, max_length=32)


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
    hardware_id: Text = Field(min_length=1, max_length=64)
    connected: Flag
    battery_percent: Percent | None = None
    # When the button last connected or dropped (the station's clock); absent: the
    # server counts from the first heartbeat that reported the change.
    since: Moment | None = None


# A station's own parts: "absent" when it has none (or none configured), "unusable" when
# it has one that does not work. Absent from the heartbeat: nothing known, nothing changed.
PartState = Literal["ok", "unusable", "absent"]


class IncidentIn(Schema):
    """An episode a station lived through, reported once the server hears it again (and in
    every heartbeat until one is taken): the server unreachable, alerts or evidence
    records it refused. ``id`` (the station's) makes a report sent again count once."""

    id: uuid.UUID
    kind: Literal["server_unreachable", "alert_refused", "evidence_rejected"]
    started: Moment
    ended: Moment
    count: Annotated[int, Field(ge=1, le=1_000_000), JSON_NUMBER] = 1  # alerts or records refused

    @model_validator(mode="after")
    def _ended_after_it_started(self):
        if self.ended < self.started:
            raise ValueError("ended must not be before started")
        return self


class HeartbeatIn(Schema):
    battery_percent: Percent | None = None
    button_connected: Flag | None = None
    station_version: Text = Field(default="", max_length=40)
    buttons: list[ButtonIn] | None = Field(default=None, max_length=10)
    modem: PartState | None = None
    microphone: PartState | None = None
    incidents: list[IncidentIn] | None = Field(default=None, max_length=20)

    @field_validator("buttons")
    @classmethod
    def _one_entry_per_button(cls, value):
        if value is not None and len({b.hardware_id for b in value}) != len(value):
            raise ValueError("each button may be listed once")
        return value


class OpenAlertOut(Schema):
    client_id: uuid.UUID
    kind: str
    state: str


class HeartbeatOut(Schema):
    server_time: datetime
    heartbeat_interval_s: int
    open_alerts: list[OpenAlertOut]
    recording_hint: str | None = None


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


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    error: str
    message: str
    fields: list[FieldErrorOut] | None = None

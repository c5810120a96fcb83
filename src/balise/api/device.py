"""The device API: what buttons, stations and phone apps call. Views stay thin: they
parse, call an action, and shape the answer."""

from __future__ import annotations

import functools
import uuid

from django.db import connection
from django.utils import timezone
from ninja import Router, Status
from ninja.errors import AuthenticationError

from balise.alerts import actions
from balise.alerts.models import ACTIVE_STATES, Acknowledgement, Alert, JoinedPress
from balise.api.errors import error_response
from balise.api.schemas import (
    AlertIn,
    AlertOut,
    CancelIn,
    CancelOut,
    ContactsOut,
    ErrorOut,
    FixesIn,
    FixesOut,
    HeartbeatIn,
    HeartbeatOut,
)
from balise.db import column, rows
from balise.devices.actions import record_heartbeat
from balise.evidence.actions import recording_hint
from balise.supervision.reports import report_incidents

router = Router(tags=["device"])

HEARTBEAT_INTERVAL_S = 300
ERRORS = {code: ErrorOut for code in (400, 401, 403, 404, 409, 413, 422, 503)}


def _fixes(items) -> list[actions.FixIn]:
    return [
        actions.FixIn(lat=f.lat, lon=f.lon, accuracy_m=f.accuracy_m, recorded_at=f.recorded_at, source=f.source,
                      client_id=f.id)
        for f in items
    ]


def _duress_view(alert: Alert) -> tuple[bool, int]:
    """(acknowledged, fixes) of an alert cancelled under duress as the device must see it:
    frozen when the duress PIN was typed, exactly as a cancel freezes them (answers and
    fixes that came after stay for her contacts and the association, not for the device)."""
    at = alert.events.filter(kind="duress").order_by("at").values_list("at", flat=True).first()
    if at is None:
        return False, alert.fixes.count()
    acknowledged = alert.acknowledgements.filter(at__lte=at).exclude(
        answer=Acknowledgement.Answer.CANNOT_HELP).exists()
    return acknowledged, alert.fixes.filter(received_at__lte=at).count()


def _alert_out(alert: Alert, client_id: uuid.UUID) -> dict:
    """ALERT as the device knows it, by its CLIENT_ID: a press that joined an open alert
    shows that alert (kind, state, fixes) under its own client id, with joined_to. An
    alert cancelled under duress reads like a cancelled one, field for field."""
    if alert.duress:
        acknowledged, fixes = _duress_view(alert)
    else:
        acknowledged, fixes = alert.acknowledged_at is not None, alert.fixes.count()
    return {
        "id": alert.pk,
        "client_id": client_id,
        "joined_to": alert.client_id if alert.client_id != client_id else None,
        "kind": alert.kind,
        "state": alert.device_state,
        "acknowledged": acknowledged,
        "created_at": alert.created_at,
        "fixes": fixes,
    }


def _closed_error():
    """What fixes for a closed alert get (balise.alerts.actions.add_fixes)."""
    return alert_error(actions.AlertError("alert_closed", "the alert is closed", status=409))


def _own_alerts(request):
    return _alerts_of(request.auth)


def _alerts_of(device):
    """The alerts of this device AND of its current holder: a device handed to someone
    else never sees the previous holder's alerts."""
    return Alert.objects.filter(device=device, person_id=device.holder_id)


def _own_alert(request, client_id: uuid.UUID) -> Alert | None:
    """The device's alert by its client id, or the alert its press of that client id joined
    (of its current holder only)."""
    own = _own_alerts(request).select_related("person").filter(client_id=client_id).first()
    if own is None:
        press = JoinedPress.objects.select_related("alert__person").filter(
            client_id=client_id, device=request.auth, alert__person_id=request.auth.holder_id).first()
        own = press.alert if press else None
    return own


def alert_error(exc: actions.AlertError):
    fields = [{"field": exc.field, "message": str(exc)}] if exc.field else None
    return error_response(exc.status, exc.code, str(exc), fields)


@router.post("/alerts", response={200: AlertOut, 201: AlertOut, **ERRORS}, summary="Raise an alert (idempotent on client_id)")
def create_alert(request, payload: AlertIn):
    try:
        return Status(*alert_answer(request.auth, payload))
    except actions.AlertError as exc:
        return alert_error(exc)


def alert_answer(device, payload: AlertIn) -> tuple[int, dict]:
    """Accept the press of DEVICE: (201, the alert raised) or (200, the alert it joined or
    its retry replays). The one place for both the view above and the ASGI fast path
    (balise.api.fastpath). Raises AlertError for a press the device API refuses."""
    alert, created = actions.create_alert(
        device, client_id=payload.client_id, kind=payload.kind, gesture=payload.gesture,
        triggered_at=payload.triggered_at, fixes=_fixes(payload.fixes),
        sms_sent_by_device=payload.sms_sent_by_device,
        sms_sent_to_contacts=frozenset(payload.sms_sent_to_contacts),
    )
    return 201 if created else 200, _alert_out(alert, payload.client_id)


@router.get("/alerts/{client_id}", response={200: AlertOut, **ERRORS}, summary="Read an alert's status")
def read_alert(request, client_id: uuid.UUID):
    alert = _own_alert(request, client_id)
    if alert is None:
        return error_response(404, "not_found", "no such alert for this device")
    return Status(200, _alert_out(alert, client_id))


@router.post("/alerts/{client_id}/fixes", response={200: FixesOut, **ERRORS}, summary="Add location fixes")
def add_fixes(request, client_id: uuid.UUID, payload: FixesIn):
    alert = _own_alert(request, client_id)
    if alert is None:
        return error_response(404, "not_found", "no such alert for this device")
    try:
        accepted, duplicates = actions.add_fixes(alert, _fixes(payload.fixes))
    except actions.AlertError as exc:
        return alert_error(exc)
    if alert.duress:
        # Kept for her contacts and the association, answered as for a cancelled alert:
        # the station keeps sending whatever it is told.
        return _closed_error()
    return Status(200, {"accepted": accepted, "duplicates": duplicates})


@router.post("/alerts/{client_id}/cancel", response={200: CancelOut, **ERRORS}, summary="Cancel with the PIN")
def cancel_alert(request, client_id: uuid.UUID, payload: CancelIn):
    alert = _own_alert(request, client_id)
    if alert is None:
        return error_response(404, "not_found", "no such alert for this device")
    try:
        actions.cancel_alert(alert, payload.pin)
    except actions.AlertError as exc:
        return alert_error(exc)
    # The same answer for the cancel and the duress PIN, whatever the alert's real state.
    return Status(200, {"client_id": client_id, "state": "cancelled"})


@router.post("/heartbeat", response={200: HeartbeatOut, **ERRORS}, summary="Report device health")
def heartbeat(request, payload: HeartbeatIn):
    answer = heartbeat_answer(request.auth, payload)
    if answer is None:  # (the device was deleted since its token was checked)
        raise AuthenticationError()
    return Status(200, answer)


def heartbeat_answer(who, payload: HeartbeatIn) -> dict | None:
    """Record the heartbeat of WHO (a device, or its bearer token: see record_heartbeat)
    and say what it should still be working on; None for a token of no usable device.
    The one place for both the view above and the ASGI fast path (balise.api.fastpath)."""
    connected = payload.button_connected
    if connected is None and payload.buttons:
        connected = all(b.connected for b in payload.buttons)
    battery = payload.battery_percent
    if battery is None and payload.buttons:
        levels = [b.battery_percent for b in payload.buttons if b.battery_percent is not None]
        battery = min(levels) if levels else None
    buttons = None
    if payload.buttons is not None:
        buttons = [{"hardware_id": b.hardware_id, "connected": b.connected, "since": b.since} for b in payload.buttons]
    beat = record_heartbeat(who, battery_percent=battery, button_connected=connected,
                            station_version=payload.station_version, modem=payload.modem,
                            microphone=payload.microphone, buttons=buttons)
    if beat is None:
        return None
    if payload.incidents:
        report_incidents(beat, payload.incidents)
    open_alerts = _open_alerts(beat)
    return {
        "server_time": timezone.now(),
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        # What the device should still be working on. An alert cancelled under duress is
        # not listed, exactly as if it had been cancelled, and nothing else in this answer
        # tells them apart: the station treats every alarm that leaves this list alike
        # (siren off at once, recording and fixes on for its after-close window).
        "open_alerts": [{"client_id": client_id, "kind": kind, "state": state}
                        for client_id, kind, state, duress in open_alerts if not duress],
        # ...except this, which only the device's evidence key opens, the same size and
        # fresh each time whatever it lists: the alerts under duress still open, which the
        # device goes on recording and tracking, silently, until the association closes them
        "recording_hint": recording_hint(beat.pk, [str(c) for c, _, _, duress in open_alerts if duress]),
    }


def _open_alerts(beat) -> list[tuple[uuid.UUID, str, str, bool]]:
    """(client id, kind, state, duress) of the open alerts of the device AND of its holder
    (see _alerts_of), and of its presses that joined an open alert (perhaps another
    device's), which stay open with it. One statement, compiled once: the ORM spent more
    time building this query than the database answering it."""
    if beat.holder_id is None:
        return []
    found = rows(_open_alerts_sql(connection.vendor), [beat.pk, beat.holder_id, *ACTIVE_STATES] * 2)
    return [(value if isinstance(value, uuid.UUID) else uuid.UUID(value), kind, state, bool(duress))
            for value, kind, state, duress in found]


@functools.cache
def _open_alerts_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    alert, joined = Alert._meta, JoinedPress._meta

    def open_of(device: str) -> str:  # (the alert is `a`; DEVICE the column naming the device)
        return f"{device} = %s AND a.{column(alert, 'person')} = %s AND a.{column(alert, 'state')} IN (%s, %s)"

    shown = f"a.{column(alert, 'kind')}, a.{column(alert, 'state')}, a.{column(alert, 'duress')}"
    own = (f"SELECT a.{column(alert, 'client_id')}, {shown}"
           f" FROM {q(alert.db_table)} a WHERE {open_of('a.' + column(alert, 'device'))}")
    presses = (f"SELECT j.{column(joined, 'client_id')}, {shown}"
               f" FROM {q(joined.db_table)} j JOIN {q(alert.db_table)} a"
               f" ON a.{q(alert.pk.column)} = j.{column(joined, 'alert')}"
               f" WHERE {open_of('j.' + column(joined, 'device'))}")
    return f"{own} UNION ALL {presses}"


@router.get("/contacts", response={200: ContactsOut, **ERRORS}, summary="The person's trusted contacts")
def contacts(request):
    person = request.auth.holder
    if person is None:
        return error_response(409, "device_not_assigned", "this device is not assigned to a person")
    return Status(200, {
        "person": {"display_name": person.display_name, "language": person.language},
        "association": {"name": person.association.name, "on_call_number": person.association.on_call_number},
        "contacts": [
            {"id": c.pk, "position": c.position, "name": c.name, "phone": c.phone, "language": c.language,
             "consent": c.consent}
            for c in person.contacts.all()
        ],
    })



"""Check-in timers: "if I have not confirmed by 23:00, send a prevention alert with my
last position". Rows fired by the dispatchers' loop next to escalation timers (this
module registers `run_due` with balise.dispatch.extra_timers), leased the same way, so a
crash between claim and alert only delays the alert until the lease expires; the alert's
client id is derived from the timer, so firing twice raises it once."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from balise.alerts.actions import AlertError, FixIn, cancel_alert, create_alert
from balise.integrations.flic.models import CheckIn, FlicButton

log = logging.getLogger(__name__)

CHECKIN_NAMESPACE = uuid.UUID("0b6f7a0e-8a8c-4e0e-9d7e-2f3c1d5a6b7c")
MAX_AHEAD = timedelta(hours=24)
EXTENSIONS_MIN = (15, 30, 60)


def clock() -> datetime:
    """Now; tests replace it."""
    return timezone.now()


def current(person) -> CheckIn | None:
    return CheckIn.objects.filter(person=person, state__in=[CheckIn.State.PENDING, CheckIn.State.RUNNING]).first()


def start(button: FlicButton, due_at: datetime) -> CheckIn:
    """Arm her timer (one at a time: a new time replaces the running one)."""
    person = button.device.holder
    with transaction.atomic():
        CheckIn.objects.filter(person=person, state=CheckIn.State.PENDING).update(
            state=CheckIn.State.CONFIRMED, closed_at=clock())
        return CheckIn.objects.create(person=person, device=button.device, due_at=due_at)


def extend(checkin: CheckIn, minutes: int) -> CheckIn:
    if minutes not in EXTENSIONS_MIN:
        raise ValueError(minutes)
    CheckIn.objects.filter(pk=checkin.pk, state=CheckIn.State.PENDING).update(
        due_at=max(checkin.due_at, clock()) + timedelta(minutes=minutes))
    checkin.refresh_from_db()
    return checkin


def confirm(checkin: CheckIn, pin: str) -> None:
    """She is fine: the timer stops. The duress PIN looks the same to whoever watches,
    but raises the alert at once and cancels it under duress, exactly as the device API
    does (every contact and the on-call line, by every channel)."""
    person = checkin.person
    match = person.match_pin(pin)
    if match is None:
        raise AlertError("wrong_pin", "wrong PIN", status=403, field="pin")
    closed = CheckIn.objects.filter(pk=checkin.pk, state=CheckIn.State.PENDING).update(
        state=CheckIn.State.CONFIRMED, closed_at=clock())
    if match == "duress" and closed:
        alert = _raise(checkin)
        cancel_alert(alert, pin)


def _raise(checkin: CheckIn):
    button = FlicButton.objects.filter(device=checkin.device).first()
    fixes = []
    if button is not None and button.last_lat is not None:
        fixes = [FixIn(lat=button.last_lat, lon=button.last_lon, accuracy_m=button.last_accuracy_m,
                       recorded_at=button.last_located_at or clock(), source="phone")]
    alert, _created = create_alert(
        checkin.device, client_id=uuid.uuid5(CHECKIN_NAMESPACE, str(checkin.pk)), kind="prevention",
        gesture="checkin", triggered_at=checkin.due_at, fixes=fixes)
    return alert


def run_due(owner: str) -> int:
    """Fire every check-in past its time: the dispatcher calls this on each scan."""
    now = clock()
    due = CheckIn.objects.filter(Q(state=CheckIn.State.PENDING, due_at__lte=now)
                                 | Q(state=CheckIn.State.RUNNING, lease_until__lt=now))
    if not due.exists():
        return 0
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, no_key=True, of=("self",))
        ids = list(due.values_list("id", flat=True)[:50])
        CheckIn.objects.filter(id__in=ids).update(
            state=CheckIn.State.RUNNING, lease_owner=owner,
            lease_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS))
    fired = 0
    for checkin in CheckIn.objects.filter(id__in=ids, lease_owner=owner).select_related("device", "person"):
        try:
            alert = _raise(checkin)
        except AlertError as exc:  # the button was unassigned meanwhile: nobody to alert for
            log.warning("check-in %s not fired: %s", checkin.pk, exc.code)
            alert = None
        CheckIn.objects.filter(pk=checkin.pk, lease_owner=owner).update(
            state=CheckIn.State.FIRED, alert=alert, closed_at=clock())
        fired += 1
        log.info("check-in %s fired: alert %s", checkin.pk, alert.pk if alert else None)
    return fired

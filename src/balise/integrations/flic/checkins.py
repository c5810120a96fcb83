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
from django.db.models import F, Q
from django.utils import timezone

from balise.alerts.actions import AlertError, FixIn, cancel_alert, create_alert, record_event
from balise.db import for_update
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


class CheckInError(Exception):
    """A timer request refused; `code` is stable."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def start(button: FlicButton, due_at: datetime) -> CheckIn:
    """Arm her timer. One at a time: while one runs, a new one is refused (stopping the
    running one needs her PIN, see confirm), never silently put in its place."""
    person = button.device.holder
    with transaction.atomic():
        # Her row serialises two starts at the same time.
        for_update(type(person).objects).filter(pk=person.pk).first()
        if current(person) is not None:
            raise CheckInError("already_running")
        return CheckIn.objects.create(person=person, device=button.device, due_at=due_at)


def locked(checkin: CheckIn) -> bool:
    """Too many wrong PINs: the timer runs to its end and raises the alert."""
    return checkin.wrong_pins >= settings.CANCEL_PIN_MAX_ATTEMPTS


def extend(checkin: CheckIn, minutes: int) -> CheckIn:
    if minutes not in EXTENSIONS_MIN:
        raise ValueError(minutes)
    # After the limit of wrong PINs, pushing it back would stop it as surely as a PIN.
    pushed = CheckIn.objects.filter(pk=checkin.pk, state=CheckIn.State.PENDING,
                                    wrong_pins__lt=settings.CANCEL_PIN_MAX_ATTEMPTS).update(
        due_at=max(checkin.due_at, clock()) + timedelta(minutes=minutes))
    checkin.refresh_from_db()
    if not pushed and locked(checkin):
        raise CheckInError("locked")
    return checkin


def confirm(checkin: CheckIn, pin: str) -> None:
    """She is fine: the timer stops. The duress PIN looks the same to whoever watches,
    but raises the alert at once and cancels it under duress, exactly as the device API
    does (every contact and the on-call line, by every channel).

    Wrong PINs are limited per timer, with the cancel PIN's limit and rule
    (settings.CANCEL_PIN_MAX_ATTEMPTS, balise.alerts.actions.cancel_alert): each is
    counted on the timer (`wrong_pins`, shown in the back-office, and written on the
    alert's timeline when the timer fires). From the limit on, every PIN gets the
    wrong-PIN answer, the cancel PIN is not even checked, the timer can no longer be
    pushed back, and it raises the alert at its time. The duress PIN is still honoured
    after the limit (the alert is raised at once, under duress) but silently: it gets
    the same refusal as every other PIN, and the timer stays as it was."""
    person = checkin.person
    limit = settings.CANCEL_PIN_MAX_ATTEMPTS
    # Which hashes to check; the decision itself is taken below, under the timer's lock.
    if locked(checkin):
        match = "duress" if person.is_duress_pin(pin) else None
    else:
        match = person.match_pin(pin)
    raise_duress = False
    with transaction.atomic():
        row = for_update(CheckIn.objects).filter(pk=checkin.pk).first()
        if row is None or row.state != CheckIn.State.PENDING:
            # Fired or stopped meanwhile: nothing left to confirm.
            raise AlertError("wrong_pin", "wrong PIN", status=403, field="pin")
        wrong = row.wrong_pins
        is_locked = wrong >= limit
        if match == "duress":
            raise_duress = True
            if not is_locked:
                CheckIn.objects.filter(pk=row.pk).update(state=CheckIn.State.CONFIRMED, closed_at=clock())
        elif match == "cancel" and not is_locked:
            CheckIn.objects.filter(pk=row.pk).update(state=CheckIn.State.CONFIRMED, closed_at=clock())
        else:
            CheckIn.objects.filter(pk=row.pk).update(wrong_pins=F("wrong_pins") + 1)
            if wrong + 1 == limit:
                log.warning("check-in %s: %d wrong PINs, it can no longer be stopped from her page", row.pk, limit)
    checkin.refresh_from_db()
    if raise_duress:
        alert = _raise(checkin)
        cancel_alert(alert, pin)
    if match is None or is_locked:
        raise AlertError("wrong_pin", "wrong PIN", status=403, field="pin")


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
            due = for_update(due, skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:50])
        CheckIn.objects.filter(id__in=ids).update(
            state=CheckIn.State.RUNNING, lease_owner=owner,
            lease_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS))
    fired = 0
    for checkin in CheckIn.objects.filter(id__in=ids, lease_owner=owner).select_related("device", "person"):
        try:
            alert = _raise(checkin)
            if checkin.wrong_pins:
                record_event(alert, "checkin_pin_refused", wrong_pins=checkin.wrong_pins,
                             locked=locked(checkin))
        except AlertError as exc:  # the button was unassigned meanwhile: nobody to alert for
            log.warning("check-in %s not fired: %s", checkin.pk, exc.code)
            alert = None
        CheckIn.objects.filter(pk=checkin.pk, lease_owner=owner).update(
            state=CheckIn.State.FIRED, alert=alert, closed_at=clock())
        fired += 1
        log.info("check-in %s fired: alert %s", checkin.pk, alert.pk if alert else None)
    return fired

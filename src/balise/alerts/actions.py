"""Business operations on alerts. Views and the dispatcher call these; each is one
transaction, and each state change is written to the alert's timeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from balise.alerts.models import Acknowledgement, Alert, AlertEvent, LocationFix
from balise.dispatch import outbox
from balise.dispatch.plans import DURESS_STEP, plan_for


class AlertError(Exception):
    """A request that cannot be applied; `code` is stable for API clients."""

    def __init__(self, code: str, message: str, status: int = 409, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field


@dataclass(frozen=True)
class FixIn:
    lat: float
    lon: float
    recorded_at: datetime
    accuracy_m: float | None = None
    source: str = "unknown"
    client_id: uuid.UUID | None = None


def record_event(alert: Alert, what: str, **data) -> AlertEvent:
    return AlertEvent.objects.create(alert=alert, kind=what, data=data)


def _fix_rows(alert: Alert, fixes: list[FixIn]) -> list[LocationFix]:
    return [
        LocationFix(
            alert=alert, client_id=f.client_id, lat=f.lat, lon=f.lon, accuracy_m=f.accuracy_m,
            recorded_at=f.recorded_at, source=f.source,
        )
        for f in fixes
    ]


def create_alert(
    device,
    *,
    client_id: uuid.UUID,
    kind: str,
    gesture: str = "",
    triggered_at: datetime | None = None,
    fixes: list[FixIn] = (),
    sms_sent_by_device: bool = False,
    sms_sent_to_contacts: frozenset[int] = frozenset(),
) -> tuple[Alert, bool]:
    """Store an alert with its fixes and all its first deliveries, in one transaction.

    Idempotent on CLIENT_ID: a retry, even concurrent with the first attempt, returns
    the stored alert and created=False.
    """
    # A retry is rare: the insert itself finds it (unique client id), no read first.
    if device.holder_id is None:
        existing = Alert.objects.filter(client_id=client_id).first()
        if existing is not None:
            return _replay(existing, device), False
        raise AlertError("device_not_assigned", "this device is not assigned to a person", status=409)
    try:
        with transaction.atomic():
            plan = plan_for(device.association, kind)
            alert = Alert.objects.create(
                client_id=client_id, device=device, person=device.holder, association=device.association,
                kind=kind, gesture=gesture, triggered_at=triggered_at, sms_sent_by_device=sms_sent_by_device,
                record=plan.record,
            )
            LocationFix.objects.bulk_create(_fix_rows(alert, list(fixes)))
            created = AlertEvent(alert=alert, kind="created", data={
                "kind": kind, "gesture": gesture, "fixes": len(fixes), "sms_sent_by_device": sms_sent_by_device,
                "sms_sent_to_contacts": sorted(sms_sent_to_contacts)})
            template = "test" if kind == "test" else "alert"
            deliveries = outbox.write_deliveries(
                alert, plan.initial, purpose="alert", template=template, skip_sms=sms_sent_by_device,
                skip_sms_to=frozenset(sms_sent_to_contacts),
            )
            AlertEvent.objects.bulk_create([created, AlertEvent(alert=alert, kind="deliveries_planned",
                                                                data={"count": len(deliveries)})])
            outbox.arm_next_step(alert)
    except IntegrityError:
        # A concurrent retry committed the same client id first.
        existing = Alert.objects.filter(client_id=client_id).first()
        if existing is None:
            raise
        return _replay(existing, device), False
    return alert, True


def _replay(alert: Alert, device) -> Alert:
    if alert.device_id != device.pk:
        raise AlertError("client_id_conflict", "this client_id belongs to another device", status=409, field="client_id")
    return alert


def add_fixes(alert: Alert, fixes: list[FixIn]) -> tuple[int, int]:
    """Add a batch of fixes; fixes already received (same client id) are skipped."""
    if not alert.is_active:
        raise AlertError("alert_closed", "the alert is closed", status=409)
    with transaction.atomic():
        ids = [f.client_id for f in fixes if f.client_id is not None]
        known = set(LocationFix.objects.filter(alert=alert, client_id__in=ids).values_list("client_id", flat=True))
        fresh, seen = [], set()
        for f in fixes:
            if f.client_id is not None and (f.client_id in known or f.client_id in seen):
                continue
            seen.add(f.client_id)
            fresh.append(f)
        LocationFix.objects.bulk_create(_fix_rows(alert, fresh))
    return len(fresh), len(fixes) - len(fresh)


def _lock(alert: Alert) -> Alert:
    return Alert.objects.select_for_update().select_related("association", "person").get(pk=alert.pk)


def _wrong_pins(alert: Alert) -> int:
    return AlertEvent.objects.filter(alert=alert, kind="cancel_refused").count()


def cancel_alert(alert: Alert, pin: str) -> Alert:
    """Cancel with the person's PIN. The duress PIN looks the same from outside, but the
    alert stays open, is flagged, and escalates at once to everyone.

    Wrong PINs are limited per alert (settings.CANCEL_PIN_MAX_ATTEMPTS). The wrong PIN
    that reaches the limit is recorded as a `cancel_pin_locked` event, which the
    association sees in the alert's timeline; from then on every attempt on this alert
    gets the wrong-PIN answer, whatever the PIN, and the cancel PIN is not even checked:
    guessing teaches nothing, and only staff can close the alert. The duress PIN is never
    a wrong PIN and is still honoured after the limit (the alert is flagged and escalates
    at once), but silently: it then gets the same refusal as every other PIN. Answering
    it "cancelled" while the cancel PIN is refused would tell an aggressor who knows the
    rule (Balise is open source) that the code she typed was the duress code; as it is,
    the cancel and the duress PIN get the same answer before the limit (cancelled) and
    after it (wrong PIN).
    """
    limit = settings.CANCEL_PIN_MAX_ATTEMPTS
    # Which hashes to check; the decision itself is taken below, under the alert's lock.
    if _wrong_pins(alert) >= limit:
        match = "duress" if alert.person.is_duress_pin(pin) else None
    else:
        match = alert.person.match_pin(pin)
    with transaction.atomic():
        alert = _lock(alert)
        wrong = _wrong_pins(alert)
        locked = wrong >= limit
        if match == "duress":
            _duress(alert)
        elif match == "cancel" and not locked:
            _cancel(alert)
        else:
            record_event(alert, "cancel_refused", **({"after_limit": True} if locked else {}))
            if wrong + 1 == limit:
                record_event(alert, "cancel_pin_locked", wrong_pins=limit)
    if match is None or locked:
        raise AlertError("wrong_pin", "wrong PIN", status=403, field="pin")
    return alert


def _duress(alert: Alert) -> None:
    if not alert.duress and alert.is_active:
        alert.duress = True
        alert.state = Alert.State.OPEN
        alert.epoch += 1
        alert.save(update_fields=["duress", "state", "epoch"])
        record_event(alert, "duress")
        outbox.write_deliveries(alert, DURESS_STEP.sends, purpose="escalation", template="duress")
        outbox.arm_next_step(alert)


def _cancel(alert: Alert) -> None:
    if alert.is_active and not alert.duress:
        alert.state = Alert.State.CANCELLED
        alert.closed_at = timezone.now()
        alert.epoch += 1
        alert.save(update_fields=["state", "closed_at", "epoch"])
        cancelled = outbox.cancel_pending(alert, ("alert", "escalation"))
        record_event(alert, "cancelled", unsent_cancelled=cancelled)
        _notify_reached_contacts(alert, "cancelled")


def _notify_reached_contacts(alert: Alert, template: str) -> None:
    """Tell the contacts who already received this alert, or may still receive it, that
    it changed: a message in a provider's hands (SENDING) arrives after the change."""
    from balise.dispatch.models import Delivery

    reached = set(
        Delivery.objects.filter(
            alert=alert, state__in=[Delivery.State.SENT, Delivery.State.SENDING], contact__isnull=False
        ).values_list("contact_id", flat=True)
    )
    contacts = [c for c in alert.person.contacts.all() if c.pk in reached]
    outbox.write_notices(alert, contacts, template)


def acknowledge_alert(alert: Alert, *, channel: str, contact=None, staff=None, answer: str = "acknowledged") -> Acknowledgement:
    """Someone is on it: stop escalation (the epoch changes) and record who."""
    with transaction.atomic():
        alert = _lock(alert)
        ack = Acknowledgement.objects.create(alert=alert, contact=contact, staff=staff, channel=channel, answer=answer)
        if alert.state == Alert.State.OPEN and answer != Acknowledgement.Answer.CANNOT_HELP:
            alert.state = Alert.State.ACKNOWLEDGED
            alert.acknowledged_at = timezone.now()
            alert.epoch += 1
            alert.save(update_fields=["state", "acknowledged_at", "epoch"])
            outbox.cancel_pending(alert, ("escalation",))
        record_event(
            alert, "acknowledged", channel=channel, answer=answer,
            contact=contact.pk if contact else None, staff=staff.pk if staff else None,
        )
        return ack


def resolve_alert(alert: Alert, *, staff=None, note: str = "") -> Alert:
    with transaction.atomic():
        alert = _lock(alert)
        if alert.is_active:
            alert.state = Alert.State.RESOLVED
            alert.closed_at = timezone.now()
            alert.epoch += 1
            alert.save(update_fields=["state", "closed_at", "epoch"])
            outbox.cancel_pending(alert, ("alert", "escalation"))
            record_event(alert, "resolved", staff=staff.pk if staff else None, note=note[:500])
            # Contacts who were alerted learn that it is over and can stand down.
            _notify_reached_contacts(alert, "resolved")
        return alert

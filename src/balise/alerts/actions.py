"""Business operations on alerts. Views and the dispatcher call these; each is one
transaction, and each state change is written to the alert's timeline."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, IntegerField, Q, Value
from django.db.models.functions import Cast
from django.utils import timezone

from balise.alerts import budget
from balise.alerts.models import (
    JOINABLE, Acknowledgement, Alert, AlertEvent, JoinedPress, Kind, LocationFix, stronger,
)
from balise.db import for_update
from balise.dispatch import outbox
from balise.dispatch.plans import DURESS_STEP, Send, plan_for

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


@dataclass(frozen=True)
class _Press:
    client_id: uuid.UUID
    kind: str
    gesture: str
    triggered_at: datetime | None
    fixes: list[FixIn]
    sms_sent_by_device: bool
    sms_sent_to_contacts: frozenset[int]


# Reads of create_alert: each one after the first needs an alert of hers raised since the
# previous read (the database refused ours) and closed before this press could join it.
RAISE_ATTEMPTS = 3


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
    """Accept a press: store an alert with its fixes and all its first deliveries, in one
    transaction; or, when an alert of the same person is open, join it.

    Returns (alert, created). ALERT is the alert the press raised, or the open alert it
    joined (then its client id is not CLIENT_ID): the press is recorded on it, its fixes
    added, and a stronger gesture escalates it (see _join). CREATED is False for a retry.
    Idempotent on CLIENT_ID: a retry, even concurrent with the first attempt, returns
    what the first attempt returned. Two first presses of hers at once (two devices)
    raise one alert, which the other joins: the database holds at most one alert a press
    joins per person (balise.alerts.models.JOINABLE), and refuses the second.

    Beyond the device's or the association's budget (balise.alerts.budget), the alert is
    still stored and reaches the association's on-call line, not the contacts.
    """
    press = _Press(client_id, kind, gesture, triggered_at, list(fixes), sms_sent_by_device,
                   frozenset(sms_sent_to_contacts))
    for attempt in range(RAISE_ATTEMPTS):
        # One read: a retry (this client id already accepted) or an open alert to join.
        replay, target = _lookup(device, press)
        if replay is not None:
            return replay, False
        if device.holder_id is None:
            raise AlertError("device_not_assigned", "this device is not assigned to a person", status=409)
        if target is not None:
            joined = _join(target, device, press)
            if joined is not None:
                return joined
            # It closed in between: this press raises an alert of its own.
        try:
            return _raise(device, press)
        except IntegrityError:
            if attempt == RAISE_ATTEMPTS - 1:
                raise
            # Another press committed first since the read: a retry of this one, or a
            # first press of hers whose alert this one joins. The next read finds it.


def _lookup(device, press: _Press) -> tuple[Alert | None, Alert | None]:
    """(the alert a retry of PRESS must answer with, the open alert of the same person it
    may join), in one query. A test never joins a real alert, nor a real one a test."""
    sql, params, holder_at, client_at = _lookup_sql(connection.vendor, device.holder_id is not None,
                                                    press.kind == Kind.TEST)
    params = list(params)
    for i in holder_at:
        params[i] = device.holder_id
    client_id = Alert._meta.get_field("client_id").get_db_prep_value(press.client_id, connection)
    for i in client_at:
        params[i] = client_id
    rows = list(Alert.objects.raw(sql, params))
    for tag in ("own", "joined"):
        for alert in rows:
            if alert.hit == tag:
                owner = alert.device_id if tag == "own" else alert.press_device
                if owner != device.pk:
                    raise AlertError("client_id_conflict", "this client_id belongs to another device", status=409,
                                     field="client_id")
                return alert, None
    opened = sorted((a for a in rows if a.hit == "open"), key=lambda a: a.pk)
    return None, opened[-1] if opened else None


# Stand-ins for the person and the press's client id, compiled into _lookup's statement.
_HOLDER = -730_199_991
_CLIENT = uuid.UUID("7e57a1e5-0000-4000-8000-00000000c11d")


@functools.cache
def _lookup_sql(vendor: str, with_holder: bool, test: bool) -> tuple[str, tuple, list[int], list[int]]:
    """_lookup's statement built by the ORM once per database and shape, with stand-ins
    where the person and the client id go (their positions returned): building it at every
    press cost more CPU than running it (issue 16). JOINABLE stays the one definition."""
    found = []
    if with_holder:
        same = Q(kind=Kind.TEST) if test else ~Q(kind=Kind.TEST)
        # JOINABLE: an alert cancelled under duress goes on for her contacts, but a press after
        # it raises a new alert, exactly as after a real cancel: the device must not tell them apart.
        found.append(Alert.objects.filter(JOINABLE, same, person_id=_HOLDER))
    found.append(Alert.objects.filter(client_id=_CLIENT))
    found.append(Alert.objects.filter(joined_presses__client_id=_CLIENT))
    tags = ("open", "own", "joined")[-len(found):]
    parts, params = [], []
    for qs, tag in zip(found, tags):
        part, part_params = qs.annotate(
            hit=Value(tag), press_device=F("joined_presses__device_id") if tag == "joined"
            else Cast(Value(None), IntegerField())).query.sql_with_params()
        parts.append(part)
        params.extend(part_params)
    client = Alert._meta.get_field("client_id").get_db_prep_value(_CLIENT, connection)
    holder_at = [i for i, p in enumerate(params) if p == _HOLDER]
    client_at = [i for i, p in enumerate(params) if p == client]
    assert len(holder_at) == int(with_holder) and len(client_at) == 2, "the stand-ins are found once each"
    return " UNION ALL ".join(parts), tuple(params), holder_at, client_at


def _raise(device, press: _Press) -> tuple[Alert, bool]:
    # The budgets first, in a short transaction of their own: every alert of an association
    # updates its one bucket row, and a lock held until the alert's commit queued all of
    # them behind the slowest (measured on PostgreSQL: issue 16).
    with transaction.atomic():
        verdict = budget.take(device)
    try:
        with transaction.atomic():
            plan = plan_for(device.association, press.kind)
            alert = Alert.objects.create(
                client_id=press.client_id, device=device, person=device.holder, association=device.association,
                kind=press.kind, gesture=press.gesture, triggered_at=press.triggered_at,
                sms_sent_by_device=press.sms_sent_by_device, record=plan.record,
            )
            LocationFix.objects.bulk_create(_fix_rows(alert, press.fixes))
            events = [AlertEvent(alert=alert, kind="created", data={
                "kind": press.kind, "gesture": press.gesture, "fixes": len(press.fixes),
                "sms_sent_by_device": press.sms_sent_by_device, "sms_sent_to_contacts": sorted(press.sms_sent_to_contacts)})]
            sends = plan.initial
            if not verdict.within:
                sends = _over_budget(alert, plan, verdict, events)
            deliveries = outbox.write_deliveries(
                alert, sends, purpose="alert", template=_template(alert), skip_sms=press.sms_sent_by_device,
                skip_sms_to=press.sms_sent_to_contacts,
            )
            events.append(AlertEvent(alert=alert, kind="deliveries_planned", data={"count": len(deliveries)}))
            AlertEvent.objects.bulk_create(events)
            outbox.arm_next_step(alert)
    except IntegrityError:
        # Refused (create_alert reads again): a concurrent retry committed the same client id
        # first, and has the token; or a press of hers raised the alert to join first, and a
        # press that joins takes none. (Another failure gives it back too: far above real use.)
        budget.give_back(device, verdict)
        raise
    return alert, True


def _template(alert: Alert) -> str:
    return "test" if alert.kind == Kind.TEST else "duress" if alert.duress else "alert"


def _on_call_only(sends: tuple[Send, ...]) -> tuple[Send, ...]:
    """What an alert over budget still sends: the plan's sends to the on-call line, and
    at least an SMS to it."""
    kept = tuple(s for s in sends if s.audience == "on_call")
    if not any(s.channel == "sms" for s in kept):
        kept += (Send("sms", "on_call"),)
    return kept


def _over_budget(alert: Alert, plan, verdict: budget.Verdict, events: list[AlertEvent]) -> tuple[Send, ...]:
    """An alert beyond a budget: flagged, no escalation chain (it calls contacts), only the
    on-call line; the first of an episode also tells the association why."""
    if not alert.association.on_call_number:
        # Nobody to take over: capping would silence her. The contacts get it as usual.
        events.append(AlertEvent(alert=alert, kind="over_budget", data={"budget": verdict.bucket, "capped": False}))
        return plan.initial
    alert.over_budget = True
    alert.escalation_step = len(plan.chain)
    alert.save(update_fields=["over_budget", "escalation_step"])
    events.append(AlertEvent(alert=alert, kind="over_budget", data={
        "budget": verdict.bucket, "capped": True, "notice": verdict.episode_start}))
    if verdict.episode_start:
        outbox.write_deliveries(alert, (Send("sms", "on_call"),), purpose="notice",
                                template=f"over_budget_{verdict.bucket}")
    return _on_call_only(plan.initial)


def _join(target: Alert, device, press: _Press) -> tuple[Alert, bool] | None:
    """Record PRESS on TARGET, an open alert of the same person, instead of fanning out
    again: its fixes are added; a stronger gesture (prevention < emergency < alarm)
    escalates the alert to that kind. None when TARGET closed (or went under duress) in
    the meantime."""
    try:
        with transaction.atomic():
            alert = _lock(target)
            if not alert.is_joinable:  # closed, or cancelled under duress, since the read
                return None
            escalate = stronger(press.kind, alert.kind)
            JoinedPress.objects.create(client_id=press.client_id, alert=alert, device=device, kind=press.kind,
                                       gesture=press.gesture, triggered_at=press.triggered_at, escalated=escalate)
            added = _new_fixes(alert, press.fixes)
            LocationFix.objects.bulk_create(_fix_rows(alert, added))
            record_event(alert, "press_joined", client_id=str(press.client_id), device=device.pk, kind=press.kind,
                         gesture=press.gesture, fixes=len(added), escalates=escalate,
                         sms_sent_by_device=press.sms_sent_by_device)
            if escalate:
                _escalate(alert, press)
    except IntegrityError:
        # A concurrent retry of the same press joined first.
        replay, _target = _lookup(device, press)
        if replay is None:
            raise
        return replay, False
    return alert, True


def _escalate(alert: Alert, press: _Press) -> None:
    """Make ALERT the stronger kind of PRESS: write the deliveries the stronger plan adds
    to what the alert already sent, and run the stronger plan's escalation chain from its
    start (a new epoch fences the weaker chain; an acknowledged alert opens again: she
    has just said that it got worse). Duress and the over-budget cap are kept."""
    from balise.dispatch.models import Delivery

    weaker = alert.kind
    plan = plan_for(alert.association, press.kind)
    already = frozenset(
        alert.deliveries.filter(purpose=Delivery.Purpose.ALERT)
        .exclude(state__in=[Delivery.State.FAILED, Delivery.State.CANCELLED])
        .values_list("recipient", "channel")
    )
    alert.kind = press.kind
    alert.record = alert.record or plan.record
    alert.state = Alert.State.OPEN
    alert.epoch += 1
    alert.escalation_step = len(plan.chain) if alert.over_budget else 0
    alert.save(update_fields=["kind", "record", "state", "epoch", "escalation_step"])
    sends = _on_call_only(plan.initial) if alert.over_budget else plan.initial
    rows = outbox.write_deliveries(alert, sends, purpose="alert", template=_template(alert),
                                   skip_sms=press.sms_sent_by_device, skip_sms_to=press.sms_sent_to_contacts,
                                   already=already)
    record_event(alert, "escalated_by_press", **{"from": weaker, "to": press.kind, "deliveries": len(rows)})
    outbox.arm_next_step(alert)


def _new_fixes(alert: Alert, fixes: list[FixIn]) -> list[FixIn]:
    """FIXES less those ALERT already has (same client id) and repeats within the batch."""
    ids = [f.client_id for f in fixes if f.client_id is not None]
    known = set(LocationFix.objects.filter(alert=alert, client_id__in=ids).values_list("client_id", flat=True)) if ids else set()
    fresh, seen = [], set()
    for f in fixes:
        if f.client_id is not None and (f.client_id in known or f.client_id in seen):
            continue
        seen.add(f.client_id)
        fresh.append(f)
    return fresh


def add_fixes(alert: Alert, fixes: list[FixIn]) -> tuple[int, int]:
    """Add a batch of fixes; fixes already received (same client id) are skipped."""
    if not alert.is_active:
        raise AlertError("alert_closed", "the alert is closed", status=409)
    with transaction.atomic():
        fresh = _new_fixes(alert, fixes)
        LocationFix.objects.bulk_create(_fix_rows(alert, fresh))
    return len(fresh), len(fixes) - len(fresh)


def _lock(alert: Alert) -> Alert:
    return for_update(Alert.objects).select_related("association", "person").get(pk=alert.pk)


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
                outbox.write_deliveries(alert, (Send("sms", "on_call"),), purpose="notice", template="pin_locked")
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

"""The supervision checks: what stops an alert from going out, found before an alert
needs it. `run_checks(now)` compares what is wrong now with the open episodes: a new
condition raises one event (and one SMS to the association's on-call line), a condition
still there raises nothing more, a condition gone clears its event.

The clock is an argument: tests move it, nothing sleeps.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils.dateparse import parse_datetime

from balise.devices.models import Device, DeviceCredential
from balise.dispatch import outbox
from balise.dispatch.models import Delivery
from balise.people.models import Contact, Person
from balise.providers import health as provider_health
from balise.supervision.messages import notice_text
from balise.supervision.models import PeriodicTest, SupervisionEvent

log = logging.getLogger(__name__)
Kind = SupervisionEvent.Kind
# Kinds of devices that send heartbeats.
HEARTBEATING = (Device.Kind.STATION, Device.Kind.PHONE)
UNDELIVERED_WINDOW = timedelta(days=30)
# What an operator reports of a message that did not reach its recipient (an unanswered
# call reached a line: it is not one of them).
UNDELIVERED_CARRIER_STATES = ("undelivered", "failed")


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    association_id: int
    device_id: int | None = None
    contact_id: int | None = None
    person_id: int | None = None
    detail: str = ""
    # Who the SMS goes to when not the association's on-call line (her test reminder).
    recipient: str = ""
    # An episode reported after the fact (supervision.reports): when it began and ended.
    raised_at: datetime | None = None
    cleared_at: datetime | None = None


def _short(text: str) -> str:
    """A subject part of any length, kept within the subject's 40 characters."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _devices(now: datetime) -> list[Condition]:
    found = []
    assigned = Device.objects.filter(status=Device.Status.ASSIGNED, holder__isnull=False)
    silent_since = now - timedelta(seconds=settings.SUPERVISION_SILENCE_SECONDS)
    # Silent: no news for the interval; or paired that long ago and never heard from (a
    # station installed but never started: she believes she is protected).
    paired_long_ago = Exists(DeviceCredential.objects.filter(device=OuterRef("pk"), revoked_at__isnull=True,
                                                             created_at__lt=silent_since))
    never_heard = Q(last_seen_at__isnull=True) & Q(paired_long_ago)
    for d in assigned.filter(Q(last_seen_at__lt=silent_since) | never_heard, kind__in=HEARTBEATING):
        found.append(Condition(Kind.SILENT, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
    for d in assigned.filter(battery_percent__lt=settings.SUPERVISION_LOW_BATTERY):
        found.append(Condition(Kind.LOW_BATTERY, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
    lost_before = now - timedelta(minutes=settings.SUPERVISION_BUTTON_MINUTES)
    # A phone's one button (no address: one episode per device), disconnected since it was
    # last seen connected, or since the phone was paired if it never was. (A station's
    # buttons are each their own episode, below.)
    paired_before_lost = Exists(DeviceCredential.objects.filter(device=OuterRef("pk"), revoked_at__isnull=True,
                                                                created_at__lt=lost_before))
    lost = Q(button_seen_at__lt=lost_before) | Q(button_seen_at__isnull=True) & Q(paired_before_lost)
    for d in (assigned.filter(lost, button_connected=False, buttons_state=[])
              .only("id", "association_id", "holder_id")):
        found.append(Condition(Kind.BUTTON_LOST, f"button:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
    # What stations say of themselves (their last heartbeat).
    reporting = assigned.filter(Q(modem_state="unusable") | Q(microphone_state="unusable") | ~Q(buttons_state=[]))
    for d in reporting.only("id", "association_id", "holder_id", "modem_state", "microphone_state", "buttons_state"):
        if d.modem_state == "unusable":
            found.append(Condition(Kind.MODEM, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
        if d.microphone_state == "unusable":
            found.append(Condition(Kind.MICROPHONE, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
        for b in d.buttons_state if isinstance(d.buttons_state, list) else []:
            if not isinstance(b, dict) or b.get("connected") is not False:
                continue
            since = parse_datetime(str(b.get("since") or ""))
            if since is not None and since < lost_before:
                address = str(b.get("hardware_id", ""))[:64]
                found.append(Condition(Kind.BUTTON_LOST, f"button:{d.pk}:{_short(address)}", d.association_id, d.pk,
                                       person_id=d.holder_id, detail=address))
    return found


def _contacts(now: datetime) -> list[Condition]:
    """Contacts whose last two messages failed (a dead number, a blocked line): set aside
    by the dispatcher, or sent but reported undelivered (or failed) by the operator."""
    found = []
    undelivered = Q(state=Delivery.State.FAILED) | Q(state=Delivery.State.SENT,
                                                       carrier_state__in=UNDELIVERED_CARRIER_STATES)
    failed = (Delivery.objects.filter(undelivered, contact__isnull=False, alert__isnull=False, created_at__gte=now - UNDELIVERED_WINDOW)
              .values_list("contact_id", flat=True).distinct())
    for contact in Contact.objects.filter(pk__in=list(failed)).select_related("person"):
        last = list(Delivery.objects.filter(contact=contact, alert__isnull=False, state__in=[Delivery.State.SENT, Delivery.State.FAILED])
                    .order_by("-created_at").values_list("state", "carrier_state")[:2])
        if len(last) == 2 and all(state == Delivery.State.FAILED or carrier in UNDELIVERED_CARRIER_STATES
                                  for state, carrier in last):
            found.append(Condition(Kind.UNDELIVERED, f"contact:{contact.pk}", contact.person.association_id,
                                   contact_id=contact.pk, person_id=contact.person_id))
    return found


def _tests(now: datetime) -> list[Condition]:
    """Periodic tests of people with a device: once her last test (or her enrolment) is
    older than her period, a discreet reminder to her own phone (one per period, open
    until her test alert arrives); a grace period later without a test, "test overdue"
    to the on-call line."""
    grace = timedelta(hours=settings.SUPERVISION_TEST_GRACE_HOURS)
    people = list(Person.objects.filter(devices__status=Device.Status.ASSIGNED).distinct()
                  .annotate(last_test=Max("alerts__created_at", filter=Q(alerts__kind="test"))))
    plans = {t.person_id: t for t in PeriodicTest.objects.filter(person__in=[p.pk for p in people])}
    reminded = dict(SupervisionEvent.objects.filter(kind=Kind.TEST_REMINDER, cleared_at__isnull=True)
                    .values_list("person_id", "raised_at"))
    found = []
    for p in people:
        plan = plans.get(p.pk)
        days = plan.period_days if plan is not None and plan.period_days is not None else settings.SUPERVISION_TEST_DAYS
        if days <= 0:
            continue  # no periodic test for her
        period = timedelta(days=days)
        since = max(p.created_at, p.last_test) if p.last_test else p.created_at
        if now - since < period:
            continue
        if now - since >= period + grace:
            found.append(Condition(Kind.TEST_OVERDUE, f"person:{p.pk}", p.association_id, person_id=p.pk))
        reminder_sent = reminded.get(p.pk)
        # An open reminder lapses after one period without a test: the next run sends the next one.
        if plan is not None and plan.phone and (reminder_sent is None or now - reminder_sent < period):
            found.append(Condition(Kind.TEST_REMINDER, f"reminder:{p.pk}", p.association_id, person_id=p.pk,
                                   recipient=plan.phone))
    return found


def _providers() -> tuple[list[Condition], set[str]]:
    """Providers whose circuit breaker is open (or half-open: still failing) in this
    process, as one condition per association; and the providers this process knows
    (an event about another is left as it is: another dispatcher judges it)."""
    from balise.associations.models import Association

    report = provider_health.report()
    failing = [name for name, h in report.items() if h["circuit"] != "closed"]
    found = []
    if failing:
        for association_id in Association.objects.values_list("pk", flat=True):
            found += [Condition(Kind.PROVIDER, f"provider:{association_id}:{_short(name)}", association_id,
                                detail=name[:64]) for name in failing]
    return found, set(report)


def current_conditions(now: datetime) -> list[Condition]:
    return _devices(now) + _contacts(now) + _tests(now) + _providers()[0]


def _raise(condition: Condition, now: datetime) -> SupervisionEvent | None:
    from balise.associations.models import Association

    try:
        with transaction.atomic():
            event = SupervisionEvent.objects.create(
                association_id=condition.association_id, kind=condition.kind, subject=condition.subject,
                device_id=condition.device_id, contact_id=condition.contact_id, person_id=condition.person_id,
                detail=condition.detail, raised_at=condition.raised_at or now, cleared_at=condition.cleared_at)
            number = condition.recipient or Association.objects.filter(
                pk=condition.association_id).values_list("on_call_number", flat=True).first()
            if number:
                event.notice = outbox.write_message(
                    recipient=number, text=notice_text(event), purpose=Delivery.Purpose.SUPERVISION,
                    template="supervision", language=settings.LANGUAGE_CODE)
                event.save(update_fields=["notice"])
            return event
    except IntegrityError:
        return None  # another dispatcher raised this episode first


def run_checks(now: datetime) -> tuple[int, int]:
    """Raise new episodes and clear finished ones; returns (raised, cleared)."""
    providers, known = _providers()
    wanted = {(c.kind, c.subject): c for c in _devices(now) + _contacts(now) + _tests(now) + providers}
    open_ = {(e.kind, e.subject): e for e in SupervisionEvent.objects.filter(cleared_at__isnull=True)}
    raised = sum(_raise(c, now) is not None for key, c in wanted.items() if key not in open_)
    gone = [e.pk for key, e in open_.items()
            if key not in wanted and (e.kind != Kind.PROVIDER or e.detail in known)]
    cleared = SupervisionEvent.objects.filter(pk__in=gone, cleared_at__isnull=True).update(cleared_at=now) if gone else 0
    if raised or cleared:
        log.info("supervision: %d raised, %d cleared", raised, cleared)
    return raised, cleared

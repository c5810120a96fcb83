"""The supervision checks: what stops an alert from going out, found before an alert
needs it. `run_checks(now)` compares what is wrong now with the open episodes: a new
condition raises one event (and one SMS to the association's on-call line), a condition
still there raises nothing more, a condition gone clears its event.

The clock is an argument: tests move it, nothing sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from balise.devices.models import Device
from balise.dispatch import outbox
from balise.dispatch.models import Delivery
from balise.people.models import Contact, Person
from balise.supervision.messages import notice_text
from balise.supervision.models import SupervisionEvent

log = logging.getLogger(__name__)
Kind = SupervisionEvent.Kind
# Kinds of devices that send heartbeats.
HEARTBEATING = (Device.Kind.STATION, Device.Kind.PHONE)
UNDELIVERED_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    association_id: int
    device_id: int | None = None
    contact_id: int | None = None
    person_id: int | None = None


def _devices(now: datetime) -> list[Condition]:
    found = []
    assigned = Device.objects.filter(status=Device.Status.ASSIGNED, holder__isnull=False)
    silent_since = now - timedelta(seconds=settings.SUPERVISION_SILENCE_SECONDS)
    for d in assigned.filter(kind__in=HEARTBEATING, last_seen_at__lt=silent_since):
        found.append(Condition(Kind.SILENT, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
    for d in assigned.filter(battery_percent__lt=settings.SUPERVISION_LOW_BATTERY):
        found.append(Condition(Kind.LOW_BATTERY, f"device:{d.pk}", d.association_id, d.pk, person_id=d.holder_id))
    return found


def _contacts(now: datetime) -> list[Condition]:
    """Contacts whose last two messages failed (a dead number, a blocked line)."""
    found = []
    failed = (Delivery.objects.filter(state=Delivery.State.FAILED, contact__isnull=False, alert__isnull=False,
                                      created_at__gte=now - UNDELIVERED_WINDOW)
              .values_list("contact_id", flat=True).distinct())
    for contact in Contact.objects.filter(pk__in=list(failed)).select_related("person"):
        last = list(Delivery.objects.filter(contact=contact, alert__isnull=False,
                                            state__in=[Delivery.State.SENT, Delivery.State.FAILED])
                    .order_by("-created_at").values_list("state", flat=True)[:2])
        if last == [Delivery.State.FAILED, Delivery.State.FAILED]:
            found.append(Condition(Kind.UNDELIVERED, f"contact:{contact.pk}", contact.person.association_id,
                                   contact_id=contact.pk, person_id=contact.person_id))
    return found


def _tests(now: datetime) -> list[Condition]:
    """People with a device whose last test (or enrolment) is older than the period."""
    due_before = now - timedelta(days=settings.SUPERVISION_TEST_DAYS)
    people = (Person.objects.filter(devices__status=Device.Status.ASSIGNED, created_at__lt=due_before).distinct()
              .annotate(last_test=Max("alerts__created_at", filter=Q(alerts__kind="test"))))
    return [Condition(Kind.TEST_OVERDUE, f"person:{p.pk}", p.association_id, person_id=p.pk)
            for p in people if p.last_test is None or p.last_test < due_before]


def current_conditions(now: datetime) -> list[Condition]:
    return _devices(now) + _contacts(now) + _tests(now)


def _raise(condition: Condition, now: datetime) -> SupervisionEvent | None:
    from balise.associations.models import Association

    try:
        with transaction.atomic():
            event = SupervisionEvent.objects.create(
                association_id=condition.association_id, kind=condition.kind, subject=condition.subject,
                device_id=condition.device_id, contact_id=condition.contact_id, person_id=condition.person_id,
                raised_at=now)
            number = Association.objects.filter(pk=condition.association_id).values_list("on_call_number", flat=True).first()
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
    wanted = {(c.kind, c.subject): c for c in current_conditions(now)}
    open_ = {(e.kind, e.subject): e for e in SupervisionEvent.objects.filter(cleared_at__isnull=True)}
    raised = sum(_raise(c, now) is not None for key, c in wanted.items() if key not in open_)
    gone = [e.pk for key, e in open_.items() if key not in wanted]
    cleared = SupervisionEvent.objects.filter(pk__in=gone, cleared_at__isnull=True).update(cleared_at=now) if gone else 0
    if raised or cleared:
        log.info("supervision: %d raised, %d cleared", raised, cleared)
    return raised, cleared

"""A programme's worth of clearly fictitious activity, written in bulk: the demo's
six-month programme (balise.demo) and the report benchmark (bench/report.py).

Every name says it is fictitious, and the phone numbers are made up like the rest of the
demo's (nothing of this history is ever sent). Rows are written directly, in bulk, with
their times in the past (a history, not live traffic: nothing is queued for sending)."""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from balise.alerts.models import Acknowledgement, Alert, Outcome
from balise.associations.models import Association
from balise.closure.models import FileClosure, Reason
from balise.console.models import Protection
from balise.devices.models import Device
from balise.dispatch.models import Delivery
from balise.people.models import Contact, Person
from balise.programmes.models import Programme
from balise.stock.models import Movement, State, StockItem
from balise.supervision.models import SupervisionEvent

KINDS = [("prevention", 0.38), ("emergency", 0.32), ("alarm", 0.12), ("test", 0.18)]
OUTCOMES = [(Outcome.FALSE_ALARM, 0.30), (Outcome.HANDLED_BY_CONTACTS, 0.35), (Outcome.POLICE_CALLED, 0.10),
            (Outcome.PERSON_SAFE, 0.20), (Outcome.OTHER, 0.05)]
REASONS = [(Reason.ENDED, 0.6), (Reason.MOVED, 0.2), (Reason.WITHDREW, 0.15), (Reason.DECEASED, 0.05)]
FICTION = 33612346000  # made-up numbers (a valid French mobile shape)


@dataclass
class Sample:
    programme: Programme
    associations: list[Association]
    persons: int
    alerts: int


@contextmanager
def _times_as_given(*fields):
    """Keep the times this history gives instead of "now" (auto_now_add), while it is written."""
    saved = [(f, f.auto_now_add) for f in fields]
    for f, _ in saved:
        f.auto_now_add = False
    try:
        yield
    finally:
        for f, value in saved:
            f.auto_now_add = value


def _pick(rng: random.Random, weighted):
    return rng.choices([v for v, _w in weighted], [w for _v, w in weighted])[0]


def _aware(d: date, seconds: float) -> datetime:
    tz = timezone.get_current_timezone()
    return timezone.make_aware(datetime(d.year, d.month, d.day), tz) + timedelta(seconds=seconds)


def generate(*, slug: str, name: str, funder: str, associations: list[tuple[str, str]], starts_on: date,
             ends_on: date, persons: int, alerts: int, seed: int = 15, budget: int | None = None,
             recent_tests: bool = False) -> Sample:
    """RECENT_TESTS: each person still protected did her periodic test in the last ten
    days of the period (a demo ending yesterday then raises no supervision alarm)."""
    rng = random.Random(seed)
    days = (ends_on - starts_on).days + 1
    with transaction.atomic(), _times_as_given(Alert._meta.get_field("created_at"),
                                               Acknowledgement._meta.get_field("at"),
                                               Person._meta.get_field("created_at")):
        rows = [Association.objects.get_or_create(slug=a_slug, defaults={"name": a_name,
                                                                          "on_call_number": "+33140000000"})[0]
                for a_slug, a_name in associations]
        programme, _created = Programme.objects.update_or_create(slug=slug, defaults={
            "name": name, "funder_name": funder, "funder_kind": Programme.FunderKind.REGION, "starts_on": starts_on,
            "ends_on": ends_on, "device_budget": budget or persons + persons // 5})
        programme.associations.set(rows)

        # People, enrolled over the first two months, with two contacts each.
        people = []
        for i in range(persons):
            association = rows[i % len(rows)] if rng.random() < 0.7 else rng.choice(rows)
            enrolled = _aware(starts_on, rng.uniform(0, min(60, days) * 86400))
            people.append(Person(association=association, display_name=f"Fictive {slug[:12]} {i + 1:04d}",
                                 created_at=enrolled))
        people = Person.objects.bulk_create(people)
        Protection.objects.bulk_create([Protection(person=p, starts_on=p.created_at.date()) for p in people])
        Contact.objects.bulk_create([
            Contact(person=p, position=k, name=f"Proche fictif {k}", consent=Contact.Consent.ACCEPTED,
                    phone=f"+{FICTION + (2 * n + k) % 4000}")
            for n, p in enumerate(people) for k in (1, 2)])

        # Devices: the whole batch received at the start, then handed over at enrolment.
        start = _aware(starts_on, 8 * 3600)
        extra = max(len(rows), persons // 10)
        devices = Device.objects.bulk_create(
            [Device(association=p.association, holder=p, kind=Device.Kind.BUTTON,
                    hardware_id=f"FICT-{slug[:10]}-{n + 1:05d}", status=Device.Status.ASSIGNED, battery_percent=80)
             for n, p in enumerate(people)]
            + [Device(association=rows[n % len(rows)], kind=Device.Kind.BUTTON, status=Device.Status.STOCK,
                      hardware_id=f"FICT-{slug[:10]}-S{n + 1:04d}") for n in range(extra)])
        items = StockItem.objects.bulk_create([
            StockItem(association_id=d.association_id, programme=programme, device=d,
                      state=State.ASSIGNED if d.holder_id else State.IN_STOCK, state_since=start, received_at=start)
            for d in devices])
        holder_of = {d.pk: d.holder_id for d in devices}
        enrolled_at = {p.pk: p.created_at for p in people}
        moves = []
        for item in items:
            moves.append(Movement(item=item, association_id=item.association_id, to_state=State.RECEIVED, at=start))
            moves.append(Movement(item=item, association_id=item.association_id, from_state=State.RECEIVED,
                                  to_state=State.IN_STOCK, at=start + timedelta(hours=2)))
            holder = holder_of[item.device_id]
            if holder:
                moves.append(Movement(item=item, association_id=item.association_id, from_state=State.IN_STOCK,
                                      to_state=State.ASSIGNED, at=max(enrolled_at[holder], start), person_id=holder))
        lost = rng.sample(items[:persons], k=max(1, persons // 100))
        for item in lost:
            moves.append(Movement(item=item, association_id=item.association_id, from_state=State.ASSIGNED,
                                  to_state=State.LOST, at=_aware(ends_on, -rng.uniform(5, 60) * 86400)))
        StockItem.objects.filter(pk__in=[i.pk for i in lost]).update(state=State.LOST)
        Device.objects.filter(stock_item__in=lost).update(status=Device.Status.LOST)

        # Files closed in the last months; their devices come back.
        closing = rng.sample(people, k=persons // 10)
        device_of = {d.holder_id: d for d in devices if d.holder_id}
        item_of = {i.device_id: i for i in items}
        closures = []
        for p in closing:
            closed = _aware(ends_on, -rng.uniform(1, min(75, days - 1)) * 86400)
            closures.append(FileClosure(person=p, association_id=p.association_id, reason=_pick(rng, REASONS),
                                        closed_at=closed, erase_after=closed + timedelta(days=90)))
            item = item_of[device_of[p.pk].pk]
            if item not in lost:
                moves.append(Movement(item=item, association_id=item.association_id, from_state=State.ASSIGNED,
                                      to_state=State.RETURNED, at=closed, person_id=p.pk))
        FileClosure.objects.bulk_create(closures)
        returned = [item_of[device_of[p.pk].pk].pk for p in closing if item_of[device_of[p.pk].pk] not in lost]
        StockItem.objects.filter(pk__in=returned).update(state=State.RETURNED)
        Device.objects.filter(stock_item__in=returned).update(status=Device.Status.RETURNED, holder=None)
        Movement.objects.bulk_create(moves, batch_size=2000)

        # Alerts, each after its person's enrolment (and before her file was closed).
        closed_at = {c.person_id: c.closed_at for c in closures}
        end = _aware(ends_on, 86400)
        rows_alerts, plans = [], []
        tested = [p for p in people if p.pk not in closed_at] if recent_tests else []
        for n in range(alerts + len(tested)):
            p = tested[n - alerts] if n >= alerts else people[rng.randrange(persons)]
            first, last = p.created_at, closed_at.get(p.pk, end)
            at = first + timedelta(seconds=rng.uniform(0, max((last - first).total_seconds(), 60)))
            kind = _pick(rng, KINDS) if n < alerts else "test"
            if n >= alerts:
                at = end - timedelta(days=rng.uniform(1, 10))
            real = kind != "test"
            contact_after = rng.lognormvariate(5.0, 0.8) if real and rng.random() < 0.85 else None
            taken_after = rng.lognormvariate(5.8, 0.6) if real and rng.random() < 0.9 else None
            rows_alerts.append(Alert(
                client_id=uuid.UUID(int=rng.getrandbits(128)), device=device_of[p.pk], person=p,
                association_id=p.association_id, kind=kind, gesture="demo", state=Alert.State.RESOLVED,
                created_at=at, closed_at=at + timedelta(minutes=30),
                acknowledged_at=at + timedelta(seconds=contact_after) if contact_after else None,
                taken_at=at + timedelta(seconds=taken_after) if taken_after else None,
                outcome=_pick(rng, OUTCOMES) if real and rng.random() < 0.93 else ""))
            plans.append((contact_after, rng.random()))
        rows_alerts = Alert.objects.bulk_create(rows_alerts, batch_size=2000)
        acks, deliveries = [], []
        for a, (contact_after, luck) in zip(rows_alerts, plans):
            if contact_after:
                acks.append(Acknowledgement(alert=a, channel=Acknowledgement.Channel.PAGE,
                                            answer=Acknowledgement.Answer.ON_MY_WAY,
                                            at=a.created_at + timedelta(seconds=contact_after)))
            failed = luck < 0.03
            recipients = ["+33140000000"] if a.kind == "test" else [f"+{FICTION + 1}", f"+{FICTION + 2}"]
            for k, recipient in enumerate(recipients):
                bad = failed and k == 0
                deliveries.append(Delivery(
                    alert=a, recipient=recipient, channel="sms", created_at=a.created_at, sent_at=a.created_at,
                    state=Delivery.State.FAILED if bad else Delivery.State.SENT, attempts=1, provider="demo",
                    carrier_state="undelivered" if bad else "delivered"))
        Acknowledgement.objects.bulk_create(acks, batch_size=2000)
        Delivery.objects.bulk_create(deliveries, batch_size=2000)

        # Supervision: low batteries and silent devices, each cleared.
        events = []
        for n in range(max(3, persons // 8)):
            d = rng.choice(devices[:persons])
            raised = _aware(starts_on, rng.uniform(0, days * 86400 - 7200))
            events.append(SupervisionEvent(association_id=d.association_id, device=d, person_id=d.holder_id,
                                           kind=rng.choice([SupervisionEvent.Kind.LOW_BATTERY,
                                                            SupervisionEvent.Kind.SILENT]),
                                           subject=f"device:{d.pk}", raised_at=raised,
                                           cleared_at=raised + timedelta(hours=rng.uniform(1, 30))))
        SupervisionEvent.objects.bulk_create(events)
    return Sample(programme, rows, persons, alerts)

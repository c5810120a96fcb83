"""The figures of the evaluation report, per association and for the whole programme.

Everything is read with a few grouped queries (one per figure, over every association
at once), so that a programme of thousands of people and tens of thousands of alerts is
reported in about a second. The figures are raw here; balise.reports.privacy turns them
into what is published (small counts suppressed, rounded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from balise.alerts.models import Acknowledgement, Alert, Kind, Outcome
from balise.associations.models import Association
from balise.closure.models import FileClosure, Reason
from balise.dispatch.models import Delivery
from balise.people.models import Person
from balise.programmes.models import Programme
from balise.stock.models import Movement, State
from balise.supervision.models import SupervisionEvent

ANSWER_WITHIN = timedelta(minutes=5)
REAL_KINDS = (Kind.PREVENTION, Kind.EMERGENCY, Kind.ALARM)
NO_OUTCOME = "none"
UNDELIVERED = ("undelivered", "failed")


@dataclass
class Table:
    """Counts: one row per category, one column per association. ADDITIVE tables are
    partitions (their rows add up to a total row, also published)."""

    key: str
    title: str
    rows: list[tuple[str, str]]
    additive: bool = False
    values: dict[tuple[str, int], int] = field(default_factory=dict)

    def get(self, row: str, association_id: int) -> int:
        return self.values.get((row, association_id), 0)


@dataclass
class Timing:
    """Times of one association (or the programme), in seconds."""

    to_contact: list[float] = field(default_factory=list)
    to_association: list[float] = field(default_factory=list)
    alerts: int = 0
    answered_within: int = 0


@dataclass
class Figures:
    programme: Programme | None
    title: str
    starts_on: date
    ends_on: date
    associations: list[Association]
    tables: list[Table]
    timing: dict[int | str, Timing]
    months: list[date]
    device_budget: int | None


def bounds(starts_on: date, ends_on: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return (timezone.make_aware(datetime.combine(starts_on, time.min), tz),
            timezone.make_aware(datetime.combine(ends_on + timedelta(days=1), time.min), tz))


def _grouped(queryset, key: str) -> dict[tuple[str, int], int]:
    return {(str(k), a): n for a, k, n in queryset.values_list("association_id", key).annotate(n=Count("id"))
            .values_list("association_id", key, "n")}


def _months(starts_on: date, ends_on: date) -> list[date]:
    months, d = [], starts_on.replace(day=1)
    while d <= ends_on:
        months.append(d)
        d = (d + timedelta(days=32)).replace(day=1)
    return months


def compute(associations: list[Association], starts_on: date, ends_on: date, *, programme: Programme | None = None,
            title: str = "") -> Figures:
    ids = [a.pk for a in associations]
    start, end = bounds(starts_on, ends_on)
    tables: list[Table] = []

    # People: enrolled before the end and not closed before the start; still protected at the end.
    people = Person.objects.filter(association_id__in=ids, created_at__lt=end).exclude(closure__closed_at__lt=start)
    closed = FileClosure.objects.filter(association_id__in=ids, closed_at__gte=start, closed_at__lt=end)
    t = Table("people", _("People"), [("equipped", _("people equipped")), ("protected", _("still protected at the end")),
                                      ("closed", _("files closed"))])
    for a, n in people.values_list("association_id").annotate(n=Count("id")).values_list("association_id", "n"):
        t.values[("equipped", a)] = n
    for a, n in (people.exclude(closure__closed_at__lt=end).values_list("association_id").annotate(n=Count("id"))
                 .values_list("association_id", "n")):
        t.values[("protected", a)] = n
    for a, n in closed.values_list("association_id").annotate(n=Count("id")).values_list("association_id", "n"):
        t.values[("closed", a)] = n
    tables.append(t)

    t = Table("closed", _("Why protection ended"), [(r.value, r.label) for r in Reason], additive=True)
    t.values = _grouped(closed, "reason")
    tables.append(t)

    # Devices: movements of the stock during the period.
    t = Table("devices", _("Devices"), [(s, State(s).label) for s in (State.RECEIVED, State.ASSIGNED, State.RETURNED,
                                                                       State.LOST, State.BROKEN)])
    t.values = _grouped(Movement.objects.filter(association_id__in=ids, at__gte=start, at__lt=end), "to_state")
    tables.append(t)

    alerts = Alert.objects.filter(association_id__in=ids, created_at__gte=start, created_at__lt=end)
    real = alerts.filter(kind__in=REAL_KINDS)
    months = _months(starts_on, ends_on)
    kinds = Table("kinds", _("Alerts by kind"), [(k.value, k.label) for k in REAL_KINDS], additive=True)
    by_month = Table("months", _("Alerts by month"), [(m.isoformat()[:7], m.isoformat()[:7]) for m in months],
                     additive=True)
    outcomes = Table("outcomes", _("How alerts ended"),
                     [(o.value, o.label) for o in Outcome] + [(NO_OUTCOME, _("no outcome recorded"))], additive=True)
    timing = _alerts(real, ids, kinds, by_month, outcomes)
    tables += [kinds, by_month]

    # A test failed when none of its messages was sent and delivered.
    tests = list(alerts.filter(kind=Kind.TEST).order_by().values_list("pk", "association_id"))
    reached = set(Delivery.objects.filter(alert__in=alerts.filter(kind=Kind.TEST), state=Delivery.State.SENT)
                  .exclude(carrier_state__in=UNDELIVERED).order_by().values_list("alert_id", flat=True).distinct())
    t = Table("tests", _("Tests"), [("done", _("tests done")), ("failed", _("tests failed"))])
    for pk, association_id in tests:
        _add(t, "done", association_id)
        if pk not in reached:
            _add(t, "failed", association_id)
    tables.append(t)

    tables.append(outcomes)

    t = Table("messages", _("Messages"), [("undelivered", _("messages undelivered"))])
    for a, n in (Delivery.objects.filter(alert__in=alerts).filter(
            Q(state=Delivery.State.FAILED) | Q(carrier_state__in=UNDELIVERED))
            .values_list("alert__association_id").annotate(n=Count("id")).values_list("alert__association_id", "n")):
        t.values[("undelivered", a)] = n
    tables.append(t)

    t = Table("supervision", _("Supervision events"), [(k.value, k.label) for k in SupervisionEvent.Kind],
              additive=True)
    t.values = _grouped(SupervisionEvent.objects.filter(association_id__in=ids, raised_at__gte=start,
                                                        raised_at__lt=end), "kind")
    tables.append(t)

    tables.append(_evidence(ids, start, end))

    budget = programme.device_budget if programme is not None else None
    return Figures(programme, title or (programme.name if programme else ""), starts_on, ends_on, associations,
                   tables, timing, months, budget)


def _evidence(ids: list[int], start: datetime, end: datetime) -> Table:
    from balise.evidence.models import Case, CustodyRecord

    t = Table("evidence", _("Evidence"), [("opened", _("evidence cases opened")), ("exported", _("cases exported"))])
    for a, n in (Case.objects.filter(association_id__in=ids, opened_at__gte=start, opened_at__lt=end)
                 .values_list("association_id").annotate(n=Count("id")).values_list("association_id", "n")):
        t.values[("opened", a)] = n
    exported = (CustodyRecord.objects.filter(case__association_id__in=ids, action="export", at__gte=start, at__lt=end)
                .values_list("case__association_id", "case_id").distinct())
    for a, _case in exported:
        t.values[("exported", a)] = t.values.get(("exported", a), 0) + 1
    return t


def _add(table: Table, row: str, association_id: int) -> None:
    table.values[(row, association_id)] = table.values.get((row, association_id), 0) + 1


def _alerts(real, ids: list[int], kinds: Table, months: Table, outcomes: Table) -> dict[int | str, Timing]:
    """One pass over the real alerts of the period (and one grouped query for the first
    answer of a contact to each): kinds, months, outcomes and times."""
    first_contact = dict(
        Acknowledgement.objects.filter(alert__in=real).exclude(channel=Acknowledgement.Channel.STAFF)
        .exclude(answer=Acknowledgement.Answer.CANNOT_HELP).order_by().values_list("alert_id")
        .annotate(first=Min("at")).values_list("alert_id", "first"))
    timing: dict[int | str, Timing] = {a: Timing() for a in ids}
    timing["all"] = Timing()
    tz = timezone.get_current_timezone()
    rows = real.order_by().values_list("pk", "association_id", "kind", "outcome", "created_at", "taken_at")
    for pk, association_id, kind, outcome, created, taken in rows.iterator(chunk_size=5000):
        _add(kinds, kind, association_id)
        _add(months, created.astimezone(tz).date().isoformat()[:7], association_id)
        _add(outcomes, outcome or NO_OUTCOME, association_id)
        contact = first_contact.get(pk)
        for t in (timing[association_id], timing["all"]):
            t.alerts += 1
            if contact is not None:
                seconds = max((contact - created).total_seconds(), 0.0)
                t.to_contact.append(seconds)
                if seconds <= ANSWER_WITHIN.total_seconds():
                    t.answered_within += 1
            if taken is not None:
                t.to_association.append(max((taken - created).total_seconds(), 0.0))
    return timing


def for_programme(programme: Programme, starts_on: date | None = None, ends_on: date | None = None) -> Figures:
    """The programme's report, over its own dates unless others are given."""
    associations = list(programme.associations.order_by("name"))
    return compute(associations, starts_on or programme.starts_on, ends_on or programme.ends_on, programme=programme)

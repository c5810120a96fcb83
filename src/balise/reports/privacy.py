"""What the report publishes: no figure that tells about a few people.

- Primary suppression: any count under THRESHOLD is shown as "< 5".
- Secondary suppression: every published line that adds up (an association's row
  across categories of a partition, the associations of a programme against its total)
  never has exactly one hidden cell: a second one, the smallest, is hidden too, so that
  no cell is the difference of the others. Repeated until nothing changes.
- Rounding: every count shown is rounded to the nearest ROUND_TO, so that differencing
  two reports (two periods, one a day longer) never yields an exact small number.
- Times and shares are shown only over THRESHOLD alerts or more; shares are rounded to
  5 %.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from django.utils.translation import gettext as _

from balise.reports.figures import Figures, Table, Timing

THRESHOLD = 5
ROUND_TO = 5
ALL = "all"


def suppressed_text() -> str:
    return "< %d" % THRESHOLD


def rounded(value: int) -> int:
    return ROUND_TO * ((value + ROUND_TO // 2) // ROUND_TO)


@dataclass
class PublishedTable:
    key: str
    title: str
    row_keys: list[str]
    row_labels: list[str]
    columns: list[int | str]  # association ids, then ALL
    cells: dict[tuple[str, int | str], int | None]  # None: suppressed

    def text(self, row: str, column) -> str:
        value = self.cells[(row, column)]
        return suppressed_text() if value is None else str(value)


def _lines(table: Table, ids: list[int]):
    rows = [r for r, _label in table.rows] + ([ALL] if table.additive else [])
    for r in rows:
        yield [(r, a) for a in ids], (r, ALL)
    if table.additive:
        for c in [*ids, ALL]:
            yield [(r, c) for r, _label in table.rows], (ALL, c)


def suppress(table: Table, ids: list[int]) -> PublishedTable:
    rows = [r for r, _label in table.rows]
    values: dict[tuple[str, int | str], int] = {}
    for r in rows:
        for a in ids:
            values[(r, a)] = table.get(r, a)
        values[(r, ALL)] = sum(values[(r, a)] for a in ids)
    if table.additive:
        for c in [*ids, ALL]:
            values[(ALL, c)] = sum(values[(r, c)] for r in rows)
    hidden = {k for k, v in values.items() if v < THRESHOLD}
    lines = list(_lines(table, ids))
    changed = True
    while changed:
        changed = False
        for members, total in lines:
            entries = [*members, total]
            if sum(e in hidden for e in entries) != 1:
                continue
            visible = [m for m in members if m not in hidden]
            pick = min(visible, key=lambda k: (values[k], entries.index(k))) if visible else total
            hidden.add(pick)
            changed = True
    labels = [str(label) for _r, label in table.rows]
    if table.additive:
        rows, labels = [*rows, ALL], [*labels, _("total")]
    cells = {k: (None if k in hidden else rounded(v)) for k, v in values.items()}
    return PublishedTable(table.key, str(table.title), rows, labels, [*ids, ALL], cells)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


@dataclass
class PublishedTiming:
    contact_median: str
    contact_p90: str
    association_median: str
    association_p90: str
    within_share: str


def _minutes(seconds: float) -> str:
    return _("%(m).1f min") % {"m": seconds / 60}


def timing(t: Timing) -> PublishedTiming:
    hidden = suppressed_text()

    def pair(values: list[float]) -> tuple[str, str]:
        if len(values) < THRESHOLD:
            return hidden, hidden
        return _minutes(statistics.median(values)), _minutes(_percentile(values, 90))

    cm, cp = pair(t.to_contact)
    am, ap = pair(t.to_association)
    within = t.answered_within
    if t.alerts < THRESHOLD or within < THRESHOLD or t.alerts - within < THRESHOLD:
        share = hidden if t.alerts < THRESHOLD else _("not shown (too few)")
    else:
        share = "%d %%" % rounded(round(100 * within / t.alerts))
    return PublishedTiming(cm, cp, am, ap, share)


@dataclass
class Published:
    figures: Figures
    columns: list[tuple[int | str, str]]  # (id, name) then (ALL, programme)
    tables: list[PublishedTable]
    timing: dict[int | str, PublishedTiming]

    def table(self, key: str) -> PublishedTable:
        return next(t for t in self.tables if t.key == key)


def publish(figures: Figures) -> Published:
    ids = [a.pk for a in figures.associations]
    columns = [(a.pk, a.name) for a in figures.associations] + [(ALL, _("whole programme"))]
    tables = [suppress(t, ids) for t in figures.tables]
    return Published(figures, columns, tables, {k: timing(v) for k, v in figures.timing.items()})

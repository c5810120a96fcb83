"""Which reports a caller may read, built and published."""

from __future__ import annotations

from datetime import date

from django.utils.translation import gettext as _

from balise.programmes.models import Programme
from balise.reports import figures, privacy


class ReportError(Exception):
    """Bad request for a report (unknown programme, dates); the message is for people."""


def check_period(starts_on: date | None, ends_on: date | None) -> None:
    if starts_on and ends_on and ends_on < starts_on:
        raise ReportError(_("The end of the period comes before its start."))


def build(programmes: list[Programme], starts_on: date | None = None, ends_on: date | None = None
          ) -> list[privacy.Published]:
    """One published report per programme, over its dates narrowed by STARTS_ON/ENDS_ON."""
    check_period(starts_on, ends_on)
    reports = []
    for programme in programmes:
        start = max(starts_on, programme.starts_on) if starts_on else programme.starts_on
        end = min(ends_on, programme.ends_on) if ends_on else programme.ends_on
        if end < start:
            # Outside its dates: a programme's report never covers its associations'
            # activity before or after it (a funder sees her programme, nothing else).
            continue
        reports.append(privacy.publish(figures.for_programme(programme, start, end)))
    if programmes and not reports:
        raise ReportError(_("The period asked is outside the programme's dates."))
    return reports


def select(queryset, slug: str | None) -> list[Programme]:
    """The programme SLUG among QUERYSET (the caller's), or all of them without a slug."""
    if slug:
        found = list(queryset.filter(slug=slug))
        if not found:
            raise ReportError(_("Unknown programme: %(slug)s.") % {"slug": slug[:60]})
        return found
    return list(queryset.order_by("-starts_on", "name"))

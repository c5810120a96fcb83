"""`balise report`: the evaluation report as a file in the current directory, and
`balise erase-closed`: the erasure job of closed files (balise.closure)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"balise report: {name} must be a date YYYY-MM-DD, not {value[:40]!r}") from None


def cmd_report(args) -> int:
    start, end = _date(args.start, "--from"), _date(args.end, "--to")
    if start and end and end < start:
        print("balise report: --to comes before --from", file=sys.stderr)
        return 2
    from balise.cli import _setup_django

    _setup_django()
    from django.utils import translation

    from balise.programmes.models import Programme
    from balise.reports import charts, render, service

    translation.activate(args.language)
    try:
        programmes = service.select(Programme.objects.all(), args.programme)
        if not programmes:
            print("balise report: no programme in the data", file=sys.stderr)
            return 2
        reports = service.build(programmes, start, end)
    except service.ReportError as exc:
        print(f"balise report: {exc}", file=sys.stderr)
        return 2
    content = render.to_pdf(reports, charts.charts) if args.format == "pdf" else render.to_csv(reports)
    first, last = min(r.figures.starts_on for r in reports), max(r.figures.ends_on for r in reports)
    name = f"balise-report-{args.programme or 'all'}-{first.isoformat()}-{last.isoformat()}.{args.format}"
    path = Path.cwd() / name
    path.write_bytes(content)
    print(path)
    return 0


def cmd_erase_closed(args) -> int:
    from balise.cli import _setup_django

    _setup_django()
    from balise.closure.actions import erase_due

    result = erase_due()
    print(f"erased {result.erased}, held by a legal hold {result.held}, waiting for messages {result.waiting}")
    return 0


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="write the evaluation report (PDF or CSV) in the current directory")
    report.add_argument("--programme", default=None, help="its short name; every programme without it")
    report.add_argument("--from", dest="start", default=None, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="end", default=None, metavar="YYYY-MM-DD")
    report.add_argument("--format", choices=("pdf", "csv"), required=True)
    report.add_argument("--language", choices=("fr", "en"), default="fr")
    report.set_defaults(func=cmd_report)
    erase = sub.add_parser("erase-closed", help="erase the personal data of closed files past their retention period")
    erase.set_defaults(func=cmd_erase_closed)

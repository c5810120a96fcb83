"""Time the evaluation report over a large programme: PERSONS people and ALERTS alerts
(with their acknowledgements, deliveries, stock movements, closures and supervision
events, written in bulk by balise.programmes.sample), then build the report (figures,
suppression) and render the page's charts, the PDF and the CSV, --runs times.

    # SQLite (a fresh database in a temporary directory)
    python bench/report.py
    # PostgreSQL (the database is created if missing; --fresh drops it first)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_report_bench python bench/report.py --fresh

Prints the time of each run, split into figures (the queries), charts, PDF and CSV.
The database is ANALYZEd first (fresh planner statistics, as autovacuum keeps them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch_latency import setup_django  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="PostgreSQL: drop and re-create the database first")
    args = parser.parse_args()
    os.environ.setdefault("BALISE_SECRET_KEY", "bench-only-secret-key-not-for-production")
    data_dir, engine = setup_django("balise-report-bench-", fresh=args.fresh)

    from balise.programmes.models import Programme
    from balise.programmes.sample import generate
    from balise.reports import charts, render, service
    from balise.reports.figures import for_programme
    from balise.reports.privacy import publish

    slug = f"bench-{args.persons}-{args.alerts}"
    started = time.perf_counter()
    programme = Programme.objects.filter(slug=slug).first()
    if programme is None:
        programme = generate(slug=slug, name="Programme de mesure (fictif)", funder="Région fictive",
                             associations=[(f"bench-{i}", f"Association fictive {i}") for i in range(1, 9)],
                             starts_on=date(2026, 1, 1), ends_on=date(2026, 6, 30), persons=args.persons,
                             alerts=args.alerts).programme
        print(f"data: {args.persons} persons, {args.alerts} alerts written in {time.perf_counter() - started:.1f} s")
    else:
        print(f"data: reusing programme {slug}")
    print(f"database: {engine}")
    # Fresh statistics, as autovacuum (PostgreSQL) keeps them after a bulk load: without
    # them the planner guesses empty tables and picks nested loops over 40,000 deliveries.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    totals = {"page": [], "pdf": [], "csv": []}

    def timed(make):
        t0 = time.perf_counter()
        figures = for_programme(programme)
        published = publish(figures)
        t1 = time.perf_counter()
        out = make(published)
        return figures, t1 - t0, time.perf_counter() - t0, out

    for run in range(1, args.runs + 1):
        figures, q_page, page, pictures = timed(charts.charts)
        _f, q_pdf, pdf_s, pdf = timed(lambda p: render.to_pdf([p], charts.charts))
        _f, q_csv, csv_s, csv = timed(lambda p: render.to_csv([p]))
        totals["page"].append(page)
        totals["pdf"].append(pdf_s)
        totals["csv"].append(csv_s)
        print(f"run {run}: page {page:.2f} s (figures {q_page:.2f} s + {len(pictures)} charts), "
              f"PDF {pdf_s:.2f} s (figures {q_pdf:.2f} s, {len(pdf) // 1024} KiB), "
              f"CSV {csv_s:.2f} s (figures {q_csv:.2f} s, {len(csv) // 1024} KiB)")
    alerts_seen = figures.timing["all"].alerts
    print(f"report over {len(figures.associations)} associations, {alerts_seen} real alerts, {args.runs} runs: "
          + ", ".join(f"{k} median {statistics.median(v):.2f} s max {max(v):.2f} s" for k, v in totals.items()))
    # Sanity: the full build as the page and the command do it.
    assert service.build([programme])[0].figures.timing["all"].alerts == alerts_seen
    if not os.environ.get("DATABASE_URL") and data_dir.startswith(("/tmp/", os.environ.get("TMPDIR", "/tmp/"))) \
            and "balise-report-bench-" in data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

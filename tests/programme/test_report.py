"""The evaluation report: every figure per association and for the programme, small
counts suppressed (primarily and secondarily, and rounded so that differencing two
reports tells nothing exact), as a page with charts, a PDF and a CSV, and by command."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import date

import pytest
from django.urls import reverse

from balise.cli import main
from balise.reports import charts, render, service
from balise.reports.figures import for_programme
from balise.reports.privacy import ALL, THRESHOLD, _lines, publish
from tests.personas import staff_client
from tests.programme.helpers import END, START, alert, at, busy_world, programme

pytestmark = pytest.mark.django_db


def _numbers(published):
    return {(t.key, r, c): v for t in published.tables for (r, c), v in t.cells.items()}


def _no_lone_hidden_cell(published, figures):
    ids = [a.pk for a in figures.associations]
    for table, raw in zip(published.tables, figures.tables):
        for members, total in _lines(raw, ids):
            hidden = [e for e in [*members, total] if table.cells[e] is None]
            assert len(hidden) != 1, (table.key, members, hidden)


def test_figures_per_association_and_programme_with_small_counts_suppressed(world):
    big = busy_world("nantes", alerts=23, people=6)
    small = busy_world("rennes", alerts=3)
    alert(small, "alarm", at(date(2026, 4, 3)), outcome="police")
    alert(big, "test", at(date(2026, 4, 3)))
    p = programme(big, small)
    figures = for_programme(p)
    raw = {t.key: t for t in figures.tables}
    assert raw["kinds"].get("emergency", big.association.pk) == 23
    assert raw["kinds"].get("emergency", small.association.pk) == 3
    assert raw["people"].get("equipped", big.association.pk) == 6
    assert raw["tests"].get("done", big.association.pk) == 1 and raw["tests"].get("failed", big.association.pk) == 1
    published = publish(figures)
    kinds = published.table("kinds")
    a, b = big.association.pk, small.association.pk
    assert kinds.cells[("emergency", b)] is None  # 3: primary
    # Secondary: the programme's 26 emergencies would tell rennes' 3 beside nantes' 23:
    # nantes' cell is hidden too; the programme's total stays, rounded.
    assert kinds.cells[("emergency", a)] is None and kinds.cells[("emergency", ALL)] == 25
    assert published.table("people").cells[("equipped", ALL)] == 5  # 7, rounded
    _no_lone_hidden_cell(published, figures)
    assert all(v is None or (v >= THRESHOLD and v % 5 == 0) for v in _numbers(published).values())
    timing = published.timing[a]
    assert timing.contact_median.endswith("min") and published.timing[b].contact_median == "< 5"
    assert published.timing[a].within_share == "100 %" or "(" in published.timing[a].within_share


def test_differencing_two_reports_reveals_no_small_count(world):
    big = busy_world("nantes", alerts=41, people=3)
    other = busy_world("brest", alerts=12)
    p = programme(big, other)
    before = publish(for_programme(p, START, date(2026, 3, 31)))
    # Two more alerts on a later day: a report one day longer must not show them exactly.
    alert(big, "emergency", at(date(2026, 4, 1)), outcome="safe")
    alert(other, "alarm", at(date(2026, 4, 1)), outcome="safe")
    after_figures = for_programme(p, START, date(2026, 4, 1))
    after = publish(after_figures)
    _no_lone_hidden_cell(after, after_figures)
    b, a = _numbers(before), _numbers(after)
    for key in b.keys() & a.keys():
        if b[key] is not None and a[key] is not None:
            assert (a[key] - b[key]) % 5 == 0, key  # never a difference of 1 to 4
    raw_after = {t.key: t for t in after_figures.tables}
    assert raw_after["outcomes"].get("safe", big.association.pk) == 1  # (there is something to hide)


def _pdf_text(content: bytes, tmp_path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True,
                              text=True).stdout
    import pypdfium2

    return "\n".join(page.get_textpage().get_text_range() for page in pypdfium2.PdfDocument(str(path)))


def test_the_pdf_and_the_csv_carry_the_figures(world, tmp_path):
    big = busy_world("nantes", alerts=23, people=6)
    small = busy_world("rennes", alerts=3)
    p = programme(big, small)
    reports = service.build([p])
    text = _pdf_text(render.to_pdf(reports, charts.charts), tmp_path)
    assert "Bilan de l'expérimentation : Expérimentation Test" in text
    assert "France Victimes nantes" in text and "France Victimes rennes" in text
    assert "Région Test" in text and "< 5" in text and "25" in text and "Alertes par type" in text
    assert "Camille" not in text and "+336" not in text
    rows = list(csv.reader(io.StringIO(render.to_csv(reports).decode("utf-8-sig"))))
    assert rows[0][0] == "programme"
    assert ["Expérimentation Test", START.isoformat(), END.isoformat(), "Alertes par type", "secours",
            "tout le programme", "25"] in rows


def test_the_page_shows_the_tables_and_charts(world):
    big = busy_world("nantes", alerts=8)
    p = programme(big, world)
    page = staff_client(big.staff).get(reverse("reports:report"))
    html = page.content.decode()
    assert page.status_code == 200 and "data:image/png;base64," in html and "Alertes par mois" in html
    assert staff_client(big.staff).get(reverse("reports:pdf")).content.startswith(b"%PDF")
    bad = staff_client(big.staff).get(reverse("reports:report"), {"start": "2026-05-01", "end": "2026-04-01"})
    assert bad.status_code == 400
    assert staff_client(big.staff).get(reverse("reports:report"), {"start": "soon"}).status_code == 400
    assert staff_client(big.staff).get(reverse("reports:csv"), {"programme": "nope"}).status_code == 400
    assert p.slug in html


def test_the_command_writes_the_file_in_the_current_directory(world, tmp_path, monkeypatch, capsys):
    programme(busy_world("nantes", alerts=8))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--format", "csv", "--from", "2026-03-01", "--to", "2026-03-31"]) == 0
    [written] = list(tmp_path.glob("*.csv"))
    assert written.name == "balise-report-all-2026-03-01-2026-03-31.csv"
    assert main(["report", "--programme", "region-test", "--format", "pdf"]) == 0
    assert list(tmp_path.glob("*.pdf"))[0].read_bytes().startswith(b"%PDF")
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad_date:
        main(["report", "--format", "pdf", "--from", "31/12/2026"])
    assert bad_date.value.code != 0 and "--from" in str(bad_date.value.code)
    assert main(["report", "--format", "csv", "--from", "2026-05-01", "--to", "2026-04-01"]) != 0
    assert main(["report", "--format", "csv", "--programme", "nope"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    # Before the programme began: its associations' activity then is not the programme's.
    assert main(["report", "--format", "csv", "--from", "2020-01-01", "--to", "2020-12-31"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*2020*"))


def test_the_report_reads_in_english_too(world):
    from django.utils import translation

    p = programme(busy_world("nantes", alerts=8))
    with translation.override("en"):
        [published] = service.build([p])
        text = render.to_csv([published]).decode("utf-8-sig")
        assert "Alerts by kind" in text and "whole programme" in text and "time to the first contact" in text
        assert "Alertes" not in text

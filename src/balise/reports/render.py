"""The report as a CSV file and as a PDF a prefecture can file (ReportLab), from the
published figures only (balise.reports.privacy)."""

from __future__ import annotations

import csv
import io
from xml.sax.saxutils import escape

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from balise.reports.privacy import ALL, Published


def timing_rows(published: Published) -> list[tuple[str, list[str]]]:
    ids = [c for c, _n in published.columns]
    t = published.timing
    return [
        (_("time to the first contact's answer, median"), [t[c].contact_median for c in ids]),
        (_("time to the first contact's answer, 90th percentile"), [t[c].contact_p90 for c in ids]),
        (_("time to the association taking charge, median"), [t[c].association_median for c in ids]),
        (_("time to the association taking charge, 90th percentile"), [t[c].association_p90 for c in ids]),
        (_("alerts answered by a contact within 5 minutes"), [t[c].within_share for c in ids]),
    ]


def period_text(published: Published) -> str:
    f = published.figures
    return _("from %(start)s to %(end)s") % {"start": date_format(f.starts_on, "SHORT_DATE_FORMAT"),
                                            "end": date_format(f.ends_on, "SHORT_DATE_FORMAT")}


def notice() -> str:
    return _("Counts under 5 are shown as “< 5”; some other cells are hidden so that totals do not reveal them; "
             "every count shown is rounded to the nearest 5. Times and shares are given only over 5 alerts or more.")


def to_csv(reports: list[Published]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("programme"), _("period start"), _("period end"), _("section"), _("figure"), _("association"), _("value")])
    for published in reports:
        f = published.figures
        head = [f.title, f.starts_on.isoformat(), f.ends_on.isoformat()]
        for table in published.tables:
            for row, label in zip(table.row_keys, table.row_labels):
                for column, name in published.columns:
                    writer.writerow([*head, table.title, label, name, table.text(row, column)])
        for label, values in timing_rows(published):
            for (column, name), value in zip(published.columns, values):
                writer.writerow([*head, _("Times"), label, name, value])
    return ("\ufeff" + out.getvalue()).encode()  # (a BOM: spreadsheet software then reads UTF-8)


def to_pdf(reports: list[Published], charts_of) -> bytes:
    """CHARTS_OF(published) gives the (title, PNG) charts of one report."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), leftMargin=1.5 * cm, rightMargin=1.5 * cm,
                            topMargin=1.5 * cm, bottomMargin=1.5 * cm, title=_("Evaluation report"),
                            author="Balise")
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    story = []
    for index, published in enumerate(reports):
        f = published.figures
        if index:
            story.append(PageBreak())
        story.append(Paragraph(escape(_("Evaluation report: %(name)s") % {"name": f.title}), styles["Title"]))
        lines = [period_text(published)]
        if f.programme is not None:
            lines.append(_("Funder: %(funder)s (%(kind)s). Budget: %(n)d devices.") % {
                "funder": f.programme.funder_name, "kind": f.programme.get_funder_kind_display(),
                "n": f.programme.device_budget})
        lines.append(_("Produced on %(date)s by Balise.") % {"date": date_format(timezone.localdate(),
                                                                                "SHORT_DATE_FORMAT")})
        for line in lines:
            story.append(Paragraph(escape(line), styles["BodyText"]))
        story.append(Paragraph(escape(notice()), small))
        story.append(Spacer(1, 0.3 * cm))
        header = [""] + [name for _c, name in published.columns]
        width = (landscape(A4)[0] - 3 * cm - 8.5 * cm) / len(published.columns)
        style = TableStyle([
            ("FONTSIZE", (0, 0), (-1, -1), 8), ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
            ("ALIGN", (1, 1), (-1, -1), "RIGHT"), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE")])
        for table in published.tables:
            data = [[table.title] + header[1:]]
            for row, label in zip(table.row_keys, table.row_labels):
                data.append([label] + [table.text(row, c) for c, _n in published.columns])
            t = Table(data, colWidths=[8.5 * cm] + [width] * len(published.columns), repeatRows=1)
            t.setStyle(style)
            story += [t, Spacer(1, 0.25 * cm)]
        data = [[_("Times")] + header[1:]] + [[label, *values] for label, values in timing_rows(published)]
        t = Table(data, colWidths=[8.5 * cm] + [width] * len(published.columns))
        t.setStyle(style)
        story += [t, PageBreak()]
        for title, png in charts_of(published):
            story.append(Image(io.BytesIO(png), width=18 * cm, height=7.2 * cm, kind="proportional"))
            story.append(Spacer(1, 0.2 * cm))
    doc.build(story)
    return out.getvalue()

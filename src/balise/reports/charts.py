"""The report's charts, drawn with matplotlib's object API (no pyplot: thread-safe, no
display needed; the Agg canvas) from the PUBLISHED figures only: a suppressed cell is
drawn as an empty bar marked "< 5"."""

from __future__ import annotations

import io

from django.utils.translation import gettext as _

from balise.reports.privacy import ALL, Published, PublishedTable, suppressed_text

COLOUR = "#2f5d8a"


def _bar_chart(table: PublishedTable, title: str, *, width: float = 7.0, rotate: int = 0) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(label, table.cells[(key, ALL)]) for key, label in zip(table.row_keys, table.row_labels) if key != ALL]
    figure = Figure(figsize=(width, 2.8), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    labels = [label for label, _v in rows]
    heights = [v or 0 for _l, v in rows]
    bars = ax.bar(range(len(rows)), heights, color=COLOUR)
    top = max(heights + [1])
    for bar, (_label, value) in zip(bars, rows):
        text = suppressed_text() if value is None else str(value)
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.02, text, ha="center", va="bottom",
                fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=rotate, ha="right" if rotate else "center", fontsize=8)
    ax.set_ylim(0, top * 1.18)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def charts(published: Published) -> list[tuple[str, bytes]]:
    """(title, PNG) of each chart of the report."""
    return [
        (_("Alerts by month"), _bar_chart(published.table("months"), _("Alerts by month, whole programme"))),
        (_("Alerts by kind"), _bar_chart(published.table("kinds"), _("Alerts by kind, whole programme"), width=5)),
        (_("How alerts ended"), _bar_chart(published.table("outcomes"), _("How alerts ended, whole programme"),
                                           rotate=20)),
    ]

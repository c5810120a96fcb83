"""The evaluation report in the console: funders (aggregates of their programme only)
and staff of the programme's associations. Thin: figures from balise.reports."""

from __future__ import annotations

import base64
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from balise.console.views import _no_store
from balise.programmes.access import readable_programmes
from balise.reports import charts, render as rendering, service
from balise.reports.forms import ReportForm
from balise.staff.access import second_factor_redirect


def report_view(view):
    """Logged in, and a funder or a member of an association; the second factor where
    her role needs one."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.memberships.exists() and not request.user.funder_accesses.exists():
            raise PermissionDenied
        return second_factor_redirect(request) or view(request, *args, **kwargs)

    return login_required(wrapper, login_url="console:login")


def _reports(request):
    """(form, reports or None, status)."""
    programmes = readable_programmes(request.user)
    form = ReportForm(request.GET or None, programmes=list(programmes))
    if request.GET and not form.is_valid():
        return form, None, 400
    data = form.cleaned_data if request.GET else {}
    try:
        chosen = service.select(programmes, data.get("programme") or None)
        return form, service.build(chosen, data.get("start"), data.get("end")), 200
    except service.ReportError as exc:
        form.add_error(None, str(exc))
        return form, None, 400


@require_GET
@report_view
def report(request):
    form, reports, status = _reports(request)
    sections = []
    for published in reports or []:
        sections.append({
            "p": published, "period": rendering.period_text(published),
            "tables": [{"t": t, "rows": [(label, [t.text(r, c) for c, _n in published.columns])
                                         for r, label in zip(t.row_keys, t.row_labels)]} for t in published.tables],
            "timing": rendering.timing_rows(published),
            "charts": [(title, base64.b64encode(png).decode()) for title, png in charts.charts(published)],
        })
    query = request.GET.urlencode()
    return _no_store(render(request, "reports/report.html", {
        "form": form, "sections": sections, "query": query, "notice": rendering.notice()}, status=status))


def _download(request, content_type: str, extension: str, make):
    form, reports, status = _reports(request)
    if reports is None:
        return HttpResponse(" ".join(str(e) for errors in form.errors.values() for e in errors), status=400,
                            content_type="text/plain; charset=utf-8")
    response = HttpResponse(make(reports), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="balise-report.{extension}"'
    return _no_store(response)


@require_GET
@report_view
def report_pdf(request):
    return _download(request, "application/pdf", "pdf", lambda r: rendering.to_pdf(r, charts.charts))


@require_GET
@report_view
def report_csv(request):
    return _download(request, "text/csv; charset=utf-8", "csv", rendering.to_csv)

"""Closing a person's file, and the association's retention period. Thin: act through
balise.closure.actions."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from balise.associations.models import Association
from balise.closure import actions
from balise.closure.forms import CloseForm, RetentionForm
from balise.console import access
from balise.console.access import staff_view
from balise.people.models import Person


@require_POST
@staff_view
def close(request, pk: int):
    person = access.get_scoped(Person.objects.all(), request, pk=pk)
    access.require_act(request, person.association_id)
    form = CloseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose why her protection ends."))
    else:
        try:
            actions.close_file(person, request.user, form.cleaned_data["reason"])
        except actions.ClosureError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Her file is closed: her devices are back in stock and her contacts are "
                                        "told they will no longer receive her alerts."))
    return redirect(reverse("console:person", args=[person.pk]))


@require_http_methods(["GET", "POST"])
@staff_view
def retention(request):
    """The association's administrators set how long a closed file is kept."""
    mine = [a for a in access.association_ids(request) if access.can_audit(request, a)]
    if not mine:
        raise PermissionDenied
    associations = list(Association.objects.filter(pk__in=mine).order_by("name"))
    form = RetentionForm(request.POST or None, associations=associations)
    if request.method == "POST" and form.is_valid():
        actions.set_retention(form.cleaned_data["association"], form.cleaned_data["days"])
        messages.success(request, _("The retention period was saved."))
        return redirect(reverse("closure:retention"))
    rows = [(a, actions.retention_days(a.pk)) for a in associations]
    response = render(request, "closure/retention.html", {"form": form, "rows": rows},
                      status=400 if request.method == "POST" else 200)
    response["Cache-Control"] = "no-store"
    return response

"""The association's stock: counts per state, a batch received, an item's history and
moves. Thin: act through balise.stock.actions; scoped like every console page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from balise.associations.models import Association
from balise.console import access, actions as console_actions
from balise.console.access import staff_view
from balise.console.views import _code_page, _no_store
from balise.people.models import Person
from balise.programmes.models import Programme
from balise.stock import actions
from balise.stock.forms import AssignForm, ImportForm, MoveForm
from balise.stock.models import Movement, State, StockItem

PAGE = 200


def _acting_associations(request) -> list[Association]:
    ids = [a for a in access.association_ids(request) if access.can_act(request, a)]
    return list(Association.objects.filter(pk__in=ids).order_by("name"))


def _import_form(request, data=None, files=None) -> ImportForm:
    associations = _acting_associations(request)
    programmes = Programme.objects.filter(associations__in=associations).distinct().prefetch_related("associations")
    return ImportForm(data, files, associations=associations, programmes=list(programmes))


def _render(request, form=None, status=200):
    ids = access.association_ids(request)
    state = request.GET.get("state", "")
    items = StockItem.objects.filter(association_id__in=ids).select_related("device", "association", "programme")
    if state in State.values:
        items = items.filter(state=state)
    per_association = []
    for association in Association.objects.filter(pk__in=ids).order_by("name"):
        counts = actions.counts([association.pk])
        per_association.append({"association": association, "counts": [(s, counts[s]) for s in State.values],
                                "total": sum(counts.values())})
    context = {
        "states": [(s, State(s).label) for s in State.values], "state": state,
        "per_association": per_association, "items": items.order_by("device__hardware_id")[:PAGE],
        "can_act": bool(_acting_associations(request)),
        "form": form or (_import_form(request) if _acting_associations(request) else None),
        "movements": Movement.objects.filter(association_id__in=ids).select_related("item__device", "by")[:30],
    }
    return _no_store(render(request, "stock/stock.html", context, status=status))


@require_GET
@staff_view
def stock_page(request):
    return _render(request)


@require_POST
@staff_view
def import_batch(request):
    if not _acting_associations(request):
        raise PermissionDenied
    form = _import_form(request, request.POST, request.FILES)
    if not form.is_valid():
        return _render(request, form=form, status=400)
    items = actions.receive(form.cleaned_data["association"], form.lines, request.user,
                            programme_id=form.cleaned_data["programme"])
    messages.success(request, _("%(n)d devices received.") % {"n": len(items)})
    return redirect(reverse("stock:stock"))


def _item(request, pk: int) -> StockItem:
    return access.get_scoped(StockItem.objects.select_related("device", "device__holder", "association", "programme"),
                             request, pk=pk)


def _item_page(request, item: StockItem, status=200, **forms_):
    can_act = access.can_act(request, item.association_id)
    people = Person.objects.filter(association_id=item.association_id, closure__isnull=True).order_by("display_name")
    context = {"item": item, "can_act": can_act, "movements": item.movements.select_related("by", "person"),
               "move_form": MoveForm(), "assign_form": AssignForm(people=people),
               "assignable": item.state in actions.ASSIGNABLE,
               "next_states": [s for s in actions.TRANSITIONS[item.state] if s in actions.MANUAL]}
    context.update(forms_)
    return _no_store(render(request, "stock/item.html", context, status=status))


@require_GET
@staff_view
def item_page(request, pk: int):
    return _item_page(request, _item(request, pk))


@require_POST
@staff_view
def item_move(request, pk: int):
    item = _item(request, pk)
    access.require_act(request, item.association_id)
    form = MoveForm(request.POST)
    if form.is_valid():
        try:
            actions.move(item, form.cleaned_data["to_state"], request.user, form.cleaned_data["note"])
        except actions.StockError as exc:
            form.add_error("to_state", str(exc))
    if not form.is_valid():
        return _item_page(request, item, status=400, move_form=form)
    messages.success(request, _("The device's state was changed."))
    return redirect(reverse("stock:item", args=[item.pk]))


@require_POST
@staff_view
def item_assign(request, pk: int):
    """Hand the item to a person, then pair it: the one-time code page of her file."""
    item = _item(request, pk)
    access.require_act(request, item.association_id)
    people = Person.objects.filter(association_id=item.association_id, closure__isnull=True)
    form = AssignForm(request.POST, people=people.order_by("display_name"))
    if form.is_valid():
        person = people.get(pk=form.cleaned_data["person"])
        try:
            item = actions.assign(item, person, request.user)
        except actions.StockError as exc:
            form.add_error("person", str(exc))
    if not form.is_valid():
        return _item_page(request, item, status=400, assign_form=form)
    code = console_actions.pairing_code(item.device, request.user)
    return _code_page(request, person, item.device, code)

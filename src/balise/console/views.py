"""The console's pages. Thin: read through balise.console.present, act through
balise.console.actions, every view behind access.staff_view."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotModified
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import parse_etags, quote_etag
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from balise.alerts.models import Alert, Outcome
from balise.associations.models import Association
from balise.console import access, actions, pairing, present
from balise.console.access import staff_view
from balise.console.forms import ContactForm, EnrolForm, NoteForm, PairForm, PersonForm, PinsForm, TestsForm
from balise.console.models import AuditEntry, PersonNote, Protection
from balise.devices.models import Device
from balise.people.models import Person


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        if not self.request.user.memberships.exists():  # a funder: her programme's report
            return reverse("reports:report")
        return reverse("console:board")


class LogoutView(auth_views.LogoutView):
    next_page = "console:login"


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def _list_context(request, focus: int | None = None) -> dict:
    ids = access.association_ids(request)
    alerts = [present.summary(a) for a in present.board_alerts(ids)]
    return {"cards": alerts, "focus": focus, "supervision": present.supervision_events(ids, reminders=False), "several": len(ids) > 1}


def _detail_context(request, alert: Alert) -> dict:
    return {"d": present.detail(alert), "can_act": access.can_act(request, alert.association_id),
            "outcomes": Outcome.choices}


def _page(request, alert: Alert | None):
    context = _list_context(request, alert.pk if alert else None)
    if alert is not None:
        context.update(_detail_context(request, alert))
    context.update({"tiles_url": settings.MAP_TILES_URL, "tiles_attribution": settings.MAP_TILES_ATTRIBUTION})
    return _no_store(render(request, "console/board.html", context))


def _alert(request, pk: int) -> Alert:
    return access.get_scoped(Alert.objects.select_related("person", "association", "taken_by"), request, pk=pk)


@require_GET
@staff_view
def board(request):
    return _page(request, None)


def _focus(request) -> int | None:
    focus = request.GET.get("focus", "")
    return int(focus) if focus.isdigit() else None


@require_GET
@staff_view
def board_list(request):
    """The list of open alerts as an HTML fragment; the board polls it each second with
    the version it holds (If-None-Match), and gets an empty 304 while nothing changed."""
    focus = _focus(request)
    etag = quote_etag(present.board_version(access.association_ids(request), focus))
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        response = HttpResponseNotModified()
    else:
        response = render(request, "console/_list.html", _list_context(request, focus))
    response["ETag"] = etag
    return _no_store(response)


@require_GET
@staff_view
def alert_page(request, pk: int):
    alert = _alert(request, pk)
    actions.audit(request.user, alert.association_id, AuditEntry.Action.VIEW_ALERT, person=alert.person, alert=alert)
    return _page(request, alert)


@require_GET
@staff_view
def alert_live(request, pk: int):
    """One alert's live part as an HTML fragment; the alert page polls it."""
    return _no_store(render(request, "console/_detail.html", _detail_context(request, _alert(request, pk))))


def _back(alert: Alert):
    return redirect(reverse("console:alert", args=[alert.pk]))


@require_POST
@staff_view
def alert_take(request, pk: int):
    alert = _alert(request, pk)
    access.require_act(request, alert.association_id)
    try:
        actions.take_charge(alert, request.user)
    except actions.ConsoleError:
        messages.error(request, _("This alert is already closed."))
    return _back(alert)


@require_POST
@staff_view
def alert_note(request, pk: int):
    alert = _alert(request, pk)
    access.require_act(request, alert.association_id)
    try:
        actions.add_note(alert, request.user, request.POST.get("text", ""))
    except actions.ConsoleError:
        messages.error(request, _("Write the note first."))
    return _back(alert)


@require_POST
@staff_view
def alert_close(request, pk: int):
    alert = _alert(request, pk)
    access.require_act(request, alert.association_id)
    outcome = request.POST.get("outcome", "")
    if outcome not in Outcome.values:
        messages.error(request, _("Choose how the alert ended."))
        return _back(alert)
    try:
        actions.close_alert(alert, request.user, outcome, request.POST.get("note", ""))
    except actions.ConsoleError:
        messages.error(request, _("This alert was already closed with an outcome."))
        return _back(alert)
    messages.success(request, _("Alert closed."))
    return _back(alert)


# -- people -------------------------------------------------------------------------------

def _person(request, pk: int) -> Person:
    return access.get_scoped(Person.objects.select_related("association"), request, pk=pk)


def _person_context(request, person: Person, **forms_) -> dict:
    protection = Protection.objects.filter(person=person).first()
    devices = list(person.devices.prefetch_related("credentials", "evidence_keys").order_by("kind", "pk"))
    for device in devices:
        device.paired = any(c.revoked_at is None for c in device.credentials.all())
        device.evidence_key = next((k for k in device.evidence_keys.all() if k.revoked_at is None), None)
    context = {
        "person": person, "protection": protection, "devices": devices,
        "contacts": list(person.contacts.all()),
        "alerts": list(person.alerts.order_by("-created_at")[:50]),
        "notes": list(PersonNote.objects.filter(person=person).select_related("author")[:50]),
        "can_act": access.can_act(request, person.association_id),
        "can_handle_evidence": access.can_handle_evidence(request, person.association_id),
        "person_form": PersonForm(initial={
            "display_name": person.display_name, "language": person.language,
            "starts_on": protection.starts_on if protection else None, "ends_on": protection.ends_on if protection else None,
        }),
        "pins_form": PinsForm(), "contact_form": ContactForm(), "note_form": NoteForm(), "pair_form": PairForm(),
        "has_pins": bool(person.cancel_pin_hash and person.duress_pin_hash),
        "tests": present.periodic_tests(person),
    }
    plan = context["tests"]["plan"]
    context["tests_form"] = TestsForm(initial={"period_days": plan.period_days if plan else None},
                                      current_phone=plan.phone if plan else "")
    context.update(forms_)
    return context


def _person_page(request, person: Person, status: int = 200, **forms_):
    return _no_store(render(request, "console/person.html", _person_context(request, person, **forms_), status=status))


def _to_person(person: Person):
    return redirect(reverse("console:person", args=[person.pk]))


@require_GET
@staff_view
def people(request):
    rows = access.scoped(Person.objects.select_related("association"), request).order_by("display_name", "pk")
    return _no_store(render(request, "console/people.html", {
        "people": rows, "can_enrol": any(access.can_act(request, a) for a in access.association_ids(request))}))


@require_GET
@staff_view
def person_page(request, pk: int):
    person = _person(request, pk)
    actions.audit(request.user, person.association_id, AuditEntry.Action.VIEW_PERSON, person=person)
    return _person_page(request, person)


def _acting_on_person(request, pk: int) -> Person:
    person = _person(request, pk)
    access.require_act(request, person.association_id)
    return person


@require_POST
@staff_view
def person_edit(request, pk: int):
    person = _acting_on_person(request, pk)
    form = PersonForm(request.POST)
    if not form.is_valid():
        return _person_page(request, person, status=400, person_form=form)
    actions.update_person(person, request.user, **form.cleaned_data)
    messages.success(request, _("Her details were saved."))
    return _to_person(person)


@require_POST
@staff_view
def person_pins(request, pk: int):
    person = _acting_on_person(request, pk)
    form = PinsForm(request.POST)
    if not form.is_valid():
        return _person_page(request, person, status=400, pins_form=form)
    actions.set_pins(person, request.user, form.cleaned_data["cancel_pin"], form.cleaned_data["duress_pin"])
    messages.success(request, _("Her codes were changed. Give them to her; they are never shown again."))
    return _to_person(person)


@require_POST
@staff_view
def contact_add(request, pk: int):
    person = _acting_on_person(request, pk)
    form = ContactForm(request.POST)
    if form.is_valid():
        try:
            actions.add_contact(person, request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
    if not form.is_valid():
        return _person_page(request, person, status=400, contact_form=form)
    messages.success(request, _("Contact added; the invitation SMS is on its way."))
    return _to_person(person)


@require_POST
@staff_view
def contact_invite(request, pk: int, contact_pk: int):
    person = _acting_on_person(request, pk)
    contact = person.contacts.filter(pk=contact_pk).first()
    if contact is None:
        raise Http404
    actions.resend_invitation(contact, request.user)
    messages.success(request, _("The invitation was sent again."))
    return _to_person(person)


@require_POST
@staff_view
def person_tests(request, pk: int):
    person = _acting_on_person(request, pk)
    form = TestsForm(request.POST, current_phone=present.test_phone(person))
    if not form.is_valid():
        return _person_page(request, person, status=400, tests_form=form)
    actions.set_periodic_test(person, request.user, **form.cleaned_data)
    messages.success(request, _("Her test reminders were saved."))
    return _to_person(person)


@require_POST
@staff_view
def person_note(request, pk: int):
    person = _acting_on_person(request, pk)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _person_page(request, person, status=400, note_form=form)
    actions.add_person_note(person, request.user, form.cleaned_data["text"])
    return _to_person(person)


@require_http_methods(["GET", "POST"])
@staff_view
def enrol(request):
    associations = [a for a in Association.objects.filter(pk__in=access.association_ids(request)).order_by("name")
                    if access.can_act(request, a.pk)]
    if not associations:
        raise PermissionDenied
    form = EnrolForm(request.POST or None, associations=associations)
    if request.method == "POST" and form.is_valid():
        try:
            person = actions.enrol(request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("She is enrolled. Pair her device below."))
            return _to_person(person)
    status = 400 if request.method == "POST" else 200
    return _no_store(render(request, "console/enrol.html", {"form": form}, status=status))


# -- audit --------------------------------------------------------------------------------

@require_GET
@staff_view
def audit_log(request):
    """Who looked at or changed what: the association's administrators only."""
    mine = [a for a in access.association_ids(request) if access.can_audit(request, a)]
    if not mine:
        raise PermissionDenied
    rows = AuditEntry.objects.filter(association__in=mine).select_related("user", "person", "association")[:500]
    return _no_store(render(request, "console/audit.html", {"rows": rows}))


# -- pairing ------------------------------------------------------------------------------

def _code_page(request, person: Person, device, code: str):
    """The code and its QR code, shown once (the page is not cached; only a hash is kept)."""
    import segno

    uri = f"balise://pair?server={settings.SITE_URL}&code={code}"
    qr = segno.make(uri, error="m").svg_inline(scale=4, title=_("Pairing code"))
    return _no_store(render(request, "console/pairing_code.html", {
        "person": person, "device": device, "code": pairing.display(code), "qr": qr,
        "minutes": settings.PAIRING_CODE_TTL // 60, "server": settings.SITE_URL}))


@require_POST
@staff_view
def device_add(request, pk: int):
    person = _acting_on_person(request, pk)
    form = PairForm(request.POST)
    if not form.is_valid():
        return _person_page(request, person, status=400, pair_form=form)
    device, code = actions.add_device(person, request.user, **form.cleaned_data)
    return _code_page(request, person, device, code)


def _acting_on_device(request, pk: int) -> Device:
    device = access.get_scoped(Device.objects.select_related("holder"), request, pk=pk)
    access.require_act(request, device.association_id)
    if device.holder is None:
        raise Http404
    return device


@require_POST
@staff_view
def device_pair(request, pk: int):
    """A new code for a device already in her file (re-installation, new phone)."""
    device = _acting_on_device(request, pk)
    return _code_page(request, device.holder, device, actions.pairing_code(device, request.user))


@require_POST
@staff_view
def device_evidence_key_revoke(request, pk: int):
    device = _acting_on_device(request, pk)
    if not access.can_handle_evidence(request, device.association_id):
        raise PermissionDenied
    actions.revoke_evidence_key(device, request.user)
    messages.success(request, _("The evidence key was revoked; the station registers its new key at its next start."))
    return _to_person(device.holder)


@require_POST
@staff_view
def device_revoke(request, pk: int):
    device = _acting_on_device(request, pk)
    actions.revoke_device(device, request.user)
    messages.success(request, _("The device's token was revoked: it can no longer send alerts until paired again."))
    return _to_person(device.holder)


# -- supervision --------------------------------------------------------------------------

@require_GET
@staff_view
def supervision_page(request):
    """Technical alarms of her associations: open ones first, then the last cleared."""
    return _no_store(render(request, "console/supervision.html", {
        "open": present.supervision_events(access.association_ids(request), open_=True),
        "cleared": present.supervision_events(access.association_ids(request), open_=False)[:100]}))

"""Her page: the webview the Flic app opens (?token=<JWT>), also reachable from a private
link she can add to her home screen. Plain HTML forms: everything works without
JavaScript. The secret in the address (the signed token or the private link) is what
authorises each request, hence no CSRF cookie (which a webview may not keep)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from balise.alerts.actions import AlertError, cancel_alert, create_alert
from balise.alerts.models import ACTIVE_STATES, Alert, Kind
from balise.devices.models import hash_token
from balise.dispatch.messages import answer_words, own_words_room, responder_name
from balise.closure.actions import retention_days
from balise.integrations.flic import checkins
from balise.integrations.flic.actions import record_health
from balise.integrations.flic.forms import CheckInForm, PinForm, PreventionTextForm
from balise.integrations.flic.models import FlicButton
from balise.integrations.flic.tokens import FlicError, verify
from balise.tracking.shortlinks import link_length

def new_private_link(button: FlicButton) -> str:
    """A fresh private link key (the previous one stops working); only its hash is kept."""
    key = "flp_" + secrets.token_urlsafe(32)
    FlicButton.objects.filter(pk=button.pk).update(page_token_hash=hash_token(key))
    return key


def _invalid(request, status: int) -> HttpResponse:
    return render(request, "flic/invalid.html", status=status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webview(request):
    token = request.GET.get("token") or request.POST.get("token") or ""
    try:
        button, claims = verify(token, "webview")
    except FlicError as exc:
        return _invalid(request, exc.status if exc.status < 500 else 400)
    if request.method == "GET":
        record_health(button, claims)
        button.refresh_from_db()
    return _page(request, button, f"?token={token}")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def private(request, key: str):
    button = None
    if key.startswith("flp_") and len(key) < 100:
        button = (FlicButton.objects.select_related("device", "device__association", "device__holder")
                  .filter(page_token_hash=hash_token(key)).first())
    if button is None or button.device.holder is None:
        return _invalid(request, 404)
    return _page(request, button, "")


def _page(request, button: FlicButton, query: str) -> HttpResponse:
    person = button.device.holder
    if person is None:
        return _invalid(request, 404)
    with translation.override(person.language):
        notice, error, private_link = "", "", ""
        room = own_words_room(person.display_name, link_length())
        forms = {"prevention": PreventionTextForm(initial={"prevention_text": person.prevention_text}, room=room),
                 "cancel": PinForm(prefix="cancel"), "confirm": PinForm(prefix="confirm"),
                 "checkin": CheckInForm()}
        if request.method == "POST":
            notice, error, private_link = _act(request, button, person, forms)
        return render(request, "flic/page.html", _context(request, button, person, forms, query, notice, error,
                                                           private_link))


def _act(request, button, person, forms) -> tuple[str, str, str]:
    """Apply the posted action: (notice, error, private link)."""
    action = request.POST.get("action")
    if action == "test":
        try:
            client_id = uuid.UUID(request.POST.get("client_id", ""))
        except ValueError:
            client_id = uuid.uuid4()
        try:
            create_alert(button.device, client_id=client_id, kind="test", gesture="page", triggered_at=timezone.now())
        except AlertError:
            return "", _("The test could not be sent. Call your association."), ""
        FlicButton.objects.filter(pk=button.pk).update(last_test_at=timezone.now())
        return _("Test sent: your association receives it, not your contacts."), "", ""
    if action == "cancel":
        form = forms["cancel"] = PinForm(request.POST, prefix="cancel")
        alert = _open_alert(person)
        if form.is_valid() and alert is not None:
            try:
                cancel_alert(alert, form.cleaned_data["pin"])
            except AlertError:
                form.add_error("pin", _("Wrong code."))
                return "", "", ""
            # The same words for the cancel and the duress code.
            return _("Your alert is cancelled."), "", ""
        return "", "", ""
    if action == "prevention_text":
        form = forms["prevention"] = PreventionTextForm(request.POST, room=forms["prevention"].room)
        if form.is_valid():
            person.prevention_text = form.cleaned_data["prevention_text"]
            person.save(update_fields=["prevention_text"])
            return _("Your message is saved."), "", ""
        return "", "", ""
    if action == "checkin_start":
        form = forms["checkin"] = CheckInForm(request.POST)
        if form.is_valid():
            try:
                checkins.start(button, _next_time(form.cleaned_data["due_time"]))
            except checkins.CheckInError:
                # A running timer is stopped with her code only, never replaced.
                return "", _("A check-in timer is already on: stop it with your code first."), ""
            return _("Your check-in timer is on."), "", ""
        return "", "", ""
    current = checkins.current(person)
    if action == "checkin_extend" and current is not None:
        try:
            checkins.extend(current, int(request.POST.get("minutes", "0")))
        except ValueError:
            return "", _("Choose 15, 30 or 60 minutes."), ""
        except checkins.CheckInError:
            return "", _("Too many wrong codes: this timer can no longer be changed here. At its time, your "
                         "contacts get the alert. If you are safe, call your association."), ""
        return _("Your check-in timer is pushed back."), "", ""
    if action == "checkin_confirm" and current is not None:
        form = forms["confirm"] = PinForm(request.POST, prefix="confirm")
        if form.is_valid():
            try:
                checkins.confirm(current, form.cleaned_data["pin"])
            except AlertError:
                form.add_error("pin", _("Wrong code."))
                return "", "", ""
            return _("Thank you: your check-in timer is stopped."), "", ""
        return "", "", ""
    if action == "private_link":
        key = new_private_link(button)
        return "", "", request.build_absolute_uri(f"/integrations/flic/p/{key}/")
    return "", "", ""


def _next_time(due) -> datetime:
    """The next occurrence of DUE (a local time of day), today or tomorrow."""
    now = timezone.localtime(checkins.clock())
    at = now.replace(hour=due.hour, minute=due.minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def _open_alert(person) -> Alert | None:
    """Her real alert still going on. An alert cancelled under duress looks cancelled
    here too; a test is never shown as an alert (it reaches her association, not her
    contacts, and stays open until the association closes it: see _open_test)."""
    return (Alert.objects.filter(person=person, state__in=ACTIVE_STATES, duress=False).exclude(kind=Kind.TEST).order_by("-created_at").first())


def _open_test(person) -> bool:
    return Alert.objects.filter(person=person, state__in=ACTIVE_STATES, kind=Kind.TEST).exists()


def _context(request, button, person, forms, query, notice, error, private_link) -> dict:
    alert = _open_alert(person)
    answers = []
    if alert is not None:
        for ack in alert.acknowledgements.select_related("contact").order_by("at", "id"):
            answers.append(_("%(who)s saw your alert: %(what)s") % {
                "who": responder_name(ack), "what": answer_words(ack.answer)})
    association = person.association
    return {
        "button": button, "person": person, "association": association, "query": query,
        "contacts": list(person.contacts.all()), "alert": alert, "answers": answers,
        "test_open": _open_test(person), "checkin": checkins.current(person), "forms": forms, "notice": notice, "error": error,
        "private_link": private_link, "test_id": uuid.uuid4(), "sms_max": forms["prevention"].room,
        "retention_days": retention_days(person.association_id),
        "action_url": request.path + query,
        "help_numbers": [("17", _("Police")), ("112", _("Emergency (Europe)")),
                         ("114", _("By text message, if you cannot speak")),
                         ("3919", _("Violences Femmes Info, free and anonymous"))],
    }

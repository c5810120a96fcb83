"""Contact pages: the live alert page (/s/<token>, the short link of the contact's SMS)
and the consent page (/c/<token>).

The token in the URL is the only credential: random and stored hashed for the live
page (balise.tracking.shortlinks), signed for the consent page; scoped to one alert and
one contact (or to one contact), and checked on every request. A bad, foreign, unknown
or expired token gets the same plain page (404), with nothing about anyone.
Tokens never reach the logs: error responses are marked as already logged, and pages
send no Referer to tile servers or maps apps.

POSTs here are exempt from CSRF checks on purpose: the unguessable token in the URL is
the capability, which a forging site cannot know, and a misconfigured proxy must never
stop a contact from answering an alert.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from balise.alerts.models import Acknowledgement, Alert
from balise.people.phones import readable_phone
from balise.staff.network import client_ip
from balise.throttle import source_key
from balise.tracking import actions
from balise.tracking.present import link_expired, page_state, version
from balise.tracking.shortlinks import TooManyAttempts, open_link, page_of, short_url
from balise.tracking.tokens import make_consent_token, read_consent_token, read_token

# An SSE stream checks for changes this often, sends the whole state at least this
# often (ages change), and ends after a while so that a proxy never holds it forever
# (the browser reconnects by itself).
SSE_POLL_S = 1.0
SSE_REFRESH_S = 15.0
SSE_MAX_S = 300.0


def _tiles_origin() -> str:
    url = settings.MAP_TILES_URL
    if not url:
        return ""
    parts = urlsplit(url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _private(response, *, csp: bool = True):
    """Headers of every contact page: never cached, never indexed, no Referer (the URL
    holds the token), and a strict content policy."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    if csp:
        img = " ".join(filter(None, ["'self'", "data:", _tiles_origin()]))
        response["Content-Security-Policy"] = (
            f"default-src 'self'; img-src {img}; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
    # Django logs 4xx responses with their path, which holds the token.
    response._has_been_logged = True
    return response


def _error(request, status: int = 404):
    template = "tracking/too_many.html" if status == 429 else "tracking/invalid.html"
    return _private(render(request, template, status=status))


def _language(contact) -> str:
    """Contact pages speak the contact's language, whatever the browser says."""
    return contact.language if contact is not None else settings.LANGUAGE_CODE


def _resolve(request, token: str):
    """(alert, contact or None) of a live short link, else the status to answer: 404 for
    an unknown or expired link (alike), 429 for a source that tried too many of them."""
    try:
        found = open_link(token, source_key(client_ip(request)))
    except TooManyAttempts:
        return 429
    return found if found is not None else 404


def _refused(status: int):
    """What the page's scripts get instead of its state (see _resolve)."""
    error = "too_many_attempts" if status == 429 else "invalid_link"
    return _private(JsonResponse({"error": error}, status=status), csp=False)


@require_GET
def alert_page(request, token: str):
    found = _resolve(request, token)
    if isinstance(found, int):
        return _error(request, found)
    alert, contact = found
    translation.activate(_language(contact))
    state = page_state(alert, contact)
    context = {
        "token": token, "state": state, "contact": contact,
        "answers": [(value, label) for value, label in _answer_choices()],
        "tiles_url": settings.MAP_TILES_URL, "tiles_attribution": settings.MAP_TILES_ATTRIBUTION,
        "consent_token": make_consent_token(contact) if contact else "",
        "answered": request.GET.get("answered") == "1",
    }
    return _private(render(request, "tracking/alert.html", context))


@require_GET
def legacy_page(request, token: str):
    """/a/<signed [alert id, contact id]>, the page's address before short links served it
    (a page still open, a link sent by an earlier release): on to a short link of its own
    while the signed link is valid (TRACKING_LINK_MAX_AGE at most; then this view can go)."""
    scope = read_token(token)
    found = page_of(scope) if scope is not None else None
    if found is None:
        return _error(request)
    alert, contact = found
    return _private(redirect(short_url(alert, contact.pk if contact else None)))


def _answer_choices():
    from django.utils.translation import gettext as _

    return [
        (Acknowledgement.Answer.ON_MY_WAY, _("I am on my way")),
        (Acknowledgement.Answer.CALLED_POLICE, _("I called the police")),
        (Acknowledgement.Answer.CANNOT_HELP, _("I cannot help")),
    ]


@require_GET
def alert_state(request, token: str):
    """The polling fallback: the page's state as JSON."""
    found = _resolve(request, token)
    if isinstance(found, int):
        return _refused(found)
    alert, contact = found
    with translation.override(_language(contact)):
        return _private(JsonResponse(page_state(alert, contact)), csp=False)


@csrf_exempt
@require_POST
def alert_answer(request, token: str):
    found = _resolve(request, token)
    wants_json = "application/json" in request.headers.get("Accept", "")
    if isinstance(found, int):
        return _refused(found) if wants_json else _error(request, found)
    alert, contact = found
    translation.activate(_language(contact))
    answer = request.POST.get("answer", "")
    if answer not in actions.CONTACT_ANSWERS:
        if wants_json:
            return _private(JsonResponse({"error": "invalid_answer"}, status=400), csp=False)
        return redirect(reverse("tracking:alert", args=[token]))
    try:
        actions.answer_alert(alert, channel=Acknowledgement.Channel.PAGE, answer=answer, contact=contact)
    except actions.NotAllowed:
        if wants_json:
            alert.refresh_from_db()
            return _private(JsonResponse({"error": "alert_closed", "state": page_state(alert, contact)}, status=409), csp=False)
        return redirect(reverse("tracking:alert", args=[token]))
    alert.refresh_from_db()
    if wants_json:
        return _private(JsonResponse(page_state(alert, contact)), csp=False)
    return redirect(reverse("tracking:alert", args=[token]) + "?answered=1")


class _Watcher:
    """The SSE loop's state: sends the page state when it changed, or now and then."""

    def __init__(self, alert_id: int, contact):
        self.alert_id = alert_id
        self.contact = contact
        self.seen = None
        self.last_sent = 0.0
        self.started = time.monotonic()
        self.done = False

    def poll(self) -> str:
        now = time.monotonic()
        if now - self.started > SSE_MAX_S:
            self.done = True
            return ""
        current = version(self.alert_id)
        if current == self.seen and now - self.last_sent < SSE_REFRESH_S:
            return ": keep-alive\n\n" if now - self.last_sent >= SSE_REFRESH_S / 2 else ""
        alert = Alert.objects.select_related("person").get(pk=self.alert_id)
        if link_expired(alert, timezone.now()):
            self.done = True
            return "event: expired\ndata: {}\n\n"
        self.seen = current
        self.last_sent = now
        with translation.override(_language(self.contact)):
            state = page_state(alert, self.contact)
        if not state["active"]:
            self.done = True  # closed: one last state, then the page stops listening
        return f"data: {json.dumps(state, separators=(',', ':'))}\n\n"


def _sync_stream(watcher: _Watcher):
    yield "retry: 3000\n\n"
    while not watcher.done:
        chunk = watcher.poll()
        if chunk:
            yield chunk
        if not watcher.done:
            time.sleep(SSE_POLL_S)


async def _async_stream(watcher: _Watcher):
    yield "retry: 3000\n\n"
    poll = sync_to_async(watcher.poll)
    while not watcher.done:
        chunk = await poll()
        if chunk:
            yield chunk
        if not watcher.done:
            await asyncio.sleep(SSE_POLL_S)


@require_GET
def alert_events(request, token: str):
    """Server-sent events: the page's state each time it changes, while the alert is open."""
    found = _resolve(request, token)
    if isinstance(found, int):
        return _private(HttpResponse(status=found), csp=False)
    alert, contact = found
    watcher = _Watcher(alert.pk, contact)
    # Under ASGI (balise serve) the stream is async and holds no thread; under WSGI a
    # thread per stream.
    stream = _async_stream(watcher) if isinstance(request, ASGIRequest) else _sync_stream(watcher)
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"
    return _private(response, csp=False)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def consent(request, token: str):
    """The invitation page: who asks, what it means, accept or decline; step down later."""
    contact = read_consent_token(token)
    if contact is None:
        return _error(request)
    translation.activate(contact.language)
    if request.method == "POST":
        choice = request.POST.get("choice", "")
        if choice not in ("accept", "decline"):
            return _private(render(request, "tracking/consent.html", {
                **_consent_context(contact), "error": True}, status=400))
        actions.set_consent(contact, accept=choice == "accept")
        return redirect(reverse("tracking:consent", args=[token]) + "?done=1")
    return _private(render(request, "tracking/consent.html", {
        **_consent_context(contact), "done": request.GET.get("done") == "1"}))


def _consent_context(contact) -> dict:
    return {"contact": contact, "person": contact.person,
            "association_phone": readable_phone(contact.person.association.on_call_number)}



@require_GET
def favicon(request):
    """/favicon.ico, which browsers ask for whatever the page says: the pages' icon."""
    from django.templatetags.static import static

    response = redirect(static("tracking/favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response

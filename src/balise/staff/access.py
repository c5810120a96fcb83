"""Reusable gates for staff pages (the back-office, the console, the API docs) and for
/metrics: a staff page is entered with a password and, where the role requires it, a
one-time code; /metrics also takes a bearer token for Prometheus."""

from __future__ import annotations

import hashlib
import hmac
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import user_has_device

from balise.staff.policy import needs_verification, staff_may_enter


def safe_next(request, default: str | None = None) -> str:
    """The `next` of REQUEST (query or form) when it stays on this site, else DEFAULT."""
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return target
    return default or resolve_url(settings.LOGIN_REDIRECT_URL)


def second_factor_url(user, next_url: str) -> str:
    """Where USER proves (or, the first time, enrols) her second factor, then goes on to NEXT_URL."""
    name = "staff:verify" if user_has_device(user) else "staff:enrol"
    return f"{reverse(name)}?{urlencode({REDIRECT_FIELD_NAME: next_url})}"


def second_factor_redirect(request):
    """For a logged-in caller: None once her second factor is verified (or when her role
    needs none), else the redirect to it. For gates that check the login themselves."""
    if needs_verification(request.user):
        return HttpResponseRedirect(second_factor_url(request.user, request.get_full_path()))
    return None


def _refusal(request):
    """None when the caller may enter a staff page; else the redirect that leads her there."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect_to_login(request.get_full_path())
    return second_factor_redirect(request)


def otp_required_for_role(view):
    """Decorator for staff views: a staff login, plus a verified second factor for the
    roles that require one (and for anyone who enrolled a device)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        return _refusal(request) or view(request, *args, **kwargs)

    return wrapped


class OTPRequiredForRoleMixin:
    """The same gate for class-based views."""

    def dispatch(self, request, *args, **kwargs):
        return _refusal(request) or super().dispatch(request, *args, **kwargs)


def _bearer_matches(request, expected: str) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    # Compare digests: constant time, whatever the lengths.
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def metrics_access(view):
    """/metrics: the bearer token of BALISE_METRICS_TOKEN (Prometheus), or a staff member
    whose session is complete. Anyone else gets 401 and nothing else."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        token = settings.METRICS_TOKEN
        if (token and _bearer_matches(request, token)) or staff_may_enter(request.user):
            return view(request, *args, **kwargs)
        response = HttpResponse("unauthorized\n", content_type="text/plain", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    return wrapped


def api_docs_access(view):
    """The browsable API docs: public when BALISE_PUBLIC_API_DOCS is set, else for staff."""
    gated = otp_required_for_role(view)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if settings.PUBLIC_API_DOCS:
            return view(request, *args, **kwargs)
        return gated(request, *args, **kwargs)

    return wrapped

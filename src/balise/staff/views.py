"""The second-factor pages: verify a code after the password, enrol an authenticator the
first time, see the recovery codes once. Also the lockout page of django-axes."""

from __future__ import annotations

import segno
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import user_has_device

from balise.staff import actions
from balise.staff.access import safe_next
from balise.staff.forms import CodeForm
from balise.staff.policy import is_verified, second_factor_required

RECOVERY_SESSION_KEY = "balise_staff_recovery_codes"


def _context(request, **extra) -> dict:
    return {**admin.site.each_context(request), "next": safe_next(request), "next_name": REDIRECT_FIELD_NAME,
            **extra}


def _throttled_message() -> str:
    return _("Too many wrong codes: wait a moment before trying again.")


@never_cache
def verify(request):
    """After the password: the code of her authenticator, or one of her recovery codes."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if is_verified(user):
        return HttpResponseRedirect(safe_next(request))
    if not user_has_device(user):
        if second_factor_required(user):
            return redirect(f"{reverse('staff:enrol')}?{request.GET.urlencode()}")
        return HttpResponseRedirect(safe_next(request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = actions.verify_second_factor(user, form.cleaned_data["token"])
        if result.device is not None:
            otp_login(request, result.device)
            return HttpResponseRedirect(safe_next(request))
        form.add_error("token", _throttled_message() if result.throttled else _("This code is not valid."))
    return render(request, "staff/verify.html", _context(request, form=form, title=_("Second factor")))


@never_cache
def enrol(request):
    """First time: a QR code and its secret for an authenticator app, confirmed by a code."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if user_has_device(user):
        # Never a new authenticator on the strength of a password alone; a verified
        # member who lost hers asks a superuser to reset it.
        if not is_verified(user):
            return redirect(f"{reverse('staff:verify')}?{request.GET.urlencode()}")
        return HttpResponseRedirect(safe_next(request))
    device = actions.pending_authenticator(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = actions.confirm_authenticator(user, form.cleaned_data["token"])
        if result.device is not None:
            otp_login(request, result.device)
            request.session[RECOVERY_SESSION_KEY] = actions.issue_recovery_codes(user)
            return redirect(f"{reverse('staff:recovery_codes')}?{request.GET.urlencode()}")
        form.add_error("token", _throttled_message() if result.throttled else _("This code is not valid."))
    secret = actions.base32_secret(device)
    qr = segno.make(device.config_url, error="m").svg_inline(scale=5, dark="#000", light="#fff")
    return render(request, "staff/enrol.html", _context(
        request, form=form, qr=qr, secret=actions.grouped(secret), title=_("Set up your second factor"),
        required=second_factor_required(user)))


@never_cache
def recovery_codes(request):
    """The recovery codes, shown once, right after enrolment."""
    codes = request.session.pop(RECOVERY_SESSION_KEY, None)
    if not request.user.is_authenticated or not codes:
        return HttpResponseRedirect(safe_next(request))
    return render(request, "staff/recovery_codes.html",
                  _context(request, codes=codes, title=_("Your recovery codes")))


@require_POST
def sign_out(request):
    logout(request)
    return redirect(settings.LOGIN_URL)


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer once a username has failed too often from an address."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return render(request, "staff/locked_out.html", _context(request, minutes=minutes, title=_("Too many attempts")),
                  status=429)

"""The back-office's admin site: a password alone never opens it to staff whose role
requires a second factor. After the password, they are led to the one-time code (or,
the first time, to enrol an authenticator)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django_otp import user_has_device

from balise.staff.access import safe_next, second_factor_url
from balise.staff.policy import needs_verification


class StaffAdminSite(admin.AdminSite):
    def has_permission(self, request):
        return super().has_permission(request) and not needs_verification(request.user)

    def each_context(self, request):
        context = super().each_context(request)
        user = request.user
        # Optional roles may set one up: the back-office offers it until they have one.
        context["offer_second_factor"] = user.is_authenticated and not user_has_device(user)
        return context

    def login(self, request, extra_context=None):
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff and needs_verification(user):
            # Password already given (this request or before): on to the second factor.
            return HttpResponseRedirect(second_factor_url(user, safe_next(request, reverse("admin:index"))))
        response = super().login(request, extra_context)
        user = request.user
        if request.method == "POST" and user.is_authenticated and needs_verification(user):
            return HttpResponseRedirect(second_factor_url(user, safe_next(request, reverse("admin:index"))))
        return response

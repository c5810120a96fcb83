"""Back-office (Django admin, until the staff console has a place for it): register Flic
buttons by serial number, one or a pasted export by the hundred; see their battery and
last press; each association's Flic settings, with the metadata to paste into Flic's
device manager."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import IntegrityError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from balise.associations.models import Association, Membership
from balise.associations.scoping import AssociationScopedAdmin, association_ids
from balise.integrations.flic.actions import MAX_REGISTER, metadata, register_buttons
from balise.integrations.flic.models import CheckIn, FlicButton, FlicSettings
from balise.people.models import Person


def metadata_json() -> str:
    return json.dumps(metadata(settings.SITE_URL), indent=2, ensure_ascii=False)


class RegisterForm(forms.Form):
    association = forms.ModelChoiceField(Association.objects.none(), label=gettext_lazy("association"))
    serials = forms.CharField(
        label=gettext_lazy("Serial numbers"), widget=forms.Textarea(attrs={"rows": 12, "cols": 60}),
        help_text=gettext_lazy("One serial number (e.g. BC44-B06243) per line, or paste the export of Flic's device "
                               "manager: every serial number found is registered, with its uuid when the line has one."),
    )
    holder = forms.ModelChoiceField(Person.objects.none(), required=False, label=gettext_lazy("hand over to"),
                                    help_text=gettext_lazy("Only when registering a single button."))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        associations = Association.objects.all()
        people = Person.objects.all()
        if not user.is_superuser:
            ids = association_ids(user)
            editing = user.memberships.exclude(role=Membership.Role.VIEWER).values_list("association_id", flat=True)
            associations = associations.filter(pk__in=editing)
            people = people.filter(association__in=ids)
        self.fields["association"].queryset = associations
        self.fields["holder"].queryset = people


@admin.register(FlicButton)
class FlicButtonAdmin(AssociationScopedAdmin):
    association_path = "device__association"
    list_display = ("serial", "holder", "battery_status", "last_pressed_at", "last_test_at")
    list_filter = ("battery_status",)
    search_fields = ("device__hardware_id", "uuid")
    list_select_related = ("device", "device__holder")
    readonly_fields = ("device", "battery_status", "last_pressed_at", "last_click_type", "last_test_at")
    fields = ("device", "uuid", "battery_status", "last_pressed_at", "last_click_type", "last_test_at")
    change_list_template = "admin/flic/flicbutton/change_list.html"

    @admin.display(description=gettext_lazy("serial number"), ordering="device__hardware_id")
    def serial(self, obj):
        return obj.device.hardware_id

    @admin.display(description=gettext_lazy("holder"))
    def holder(self, obj):
        return obj.device.holder or "—"

    def has_add_permission(self, request, *args):
        return False  # registered from the "register" page, by serial number

    def get_urls(self):
        return [path("register/", self.admin_site.admin_view(self.register_view), name="flic_flicbutton_register"),
                *super().get_urls()]

    def register_view(self, request):
        if not (request.user.is_superuser or super().has_add_permission(request)):
            return redirect("admin:index")
        form = RegisterForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                done = register_buttons(form.cleaned_data["association"], form.cleaned_data["serials"],
                                        holder=form.cleaned_data["holder"])
            except ValueError:
                form.add_error("serials", _("No serial number found, or more than %(max)d, or a person given "
                                            "several buttons or a button of another association.") % {
                                                "max": MAX_REGISTER})
            except IntegrityError:
                form.add_error("serials", _("Another registration of the same buttons happened at the same time; "
                                            "try again."))
            else:
                for button in FlicButton.objects.filter(device__hardware_id__in=done.created).select_related("device"):
                    self.log_addition(request, button, [{"added": {}}])
                count = len(done.created)
                messages.success(request, ngettext("%(n)d button registered.", "%(n)d buttons registered.", count)
                                 % {"n": count})
                if done.already:
                    messages.warning(request, _("Already registered, left as they were: %(serials)s") % {
                        "serials": ", ".join(done.already[:50]) + (" …" if len(done.already) > 50 else "")})
                return redirect(reverse("admin:flic_flicbutton_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "metadata": metadata_json(),
                   "title": _("Register Flic buttons"), "opts": self.model._meta}
        return TemplateResponse(request, "admin/flic/flicbutton/register.html", context)


@admin.register(FlicSettings)
class FlicSettingsAdmin(AssociationScopedAdmin):
    EDIT_ROLES = (Membership.Role.ADMIN,)
    list_display = ("association", "algorithm", "click_kind", "double_click_kind", "hold_kind")
    readonly_fields = ("metadata",)

    @admin.display(description=gettext_lazy("metadata for Flic's device manager"))
    def metadata(self, obj):
        return format_html("<pre>{}</pre>", metadata_json())


@admin.register(CheckIn)
class CheckInAdmin(AssociationScopedAdmin):
    """Her check-in timers, read only: the association sees the wrong codes typed to stop
    one (a burst of them may be someone trying to silence her)."""

    association_path = "person__association"
    list_display = ("person", "due_at", "state", "wrong_pins", "alert", "created_at")
    list_filter = ("state",)
    list_select_related = ("person", "alert")
    fields = readonly_fields = ("person", "device", "due_at", "state", "wrong_pins", "alert", "created_at",
                                "closed_at")

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

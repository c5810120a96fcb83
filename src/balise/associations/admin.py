from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import translation
from django.utils.html import format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from balise.alerts.models import Kind
from balise.associations.models import Association, Membership
from balise.associations.plan_form import PlanEditor, describe, full_plan
from balise.associations.scoping import AssociationScopedAdmin, Role


@admin.register(Association)
class AssociationAdmin(AssociationScopedAdmin):
    association_path = "pk"
    EDIT_ROLES = (Role.ADMIN,)
    DELETE_ROLES = ()
    list_display = ("name", "slug", "on_call_number")
    prepopulated_fields = {"slug": ("name",)}
    # The plans are edited on their own page, as steps (never as the stored JSON).
    exclude = ("alert_plans",)
    readonly_fields = ("plans_in_words",)

    @admin.display(description=gettext_lazy("alert plans"))
    def plans_in_words(self, association):
        if association.pk is None:
            return _("The default plans; change them once the association is saved.")
        sections = format_html_join("", "<p><strong>{}</strong> ({})</p><ul>{}</ul>", (
            (capfirst(label), _("its own plan") if kind in (association.alert_plans or {}) else _("the default plan"),
             format_html_join("", "<li>{}</li>", ((line,) for line in describe(full_plan(association, kind)))))
            for kind, label in Kind.choices))
        return sections  # (the link to change them is a button of the page, for those who may)

    def get_urls(self):
        return [path("<path:object_id>/plans/", self.admin_site.admin_view(self.plans_view),
                     name="associations_association_plans"), *super().get_urls()]

    def plans_view(self, request, object_id):
        association = self.get_object(request, unquote(object_id))
        if association is None:
            raise Http404
        if not self.has_change_permission(request, association):
            raise PermissionDenied
        editor = PlanEditor(association, request.POST if request.method == "POST" else None)
        if request.method == "POST" and editor.is_valid():
            association.alert_plans = editor.plans()
            association.save(update_fields=["alert_plans"])
            with translation.override(None):  # (the admin's history keeps field names untranslated)
                field = str(Association._meta.get_field("alert_plans").verbose_name)
            self.log_change(request, association, [{"changed": {"fields": [field]}}])
            messages.success(request, _("The alert plans are saved."))
            return redirect(reverse("admin:associations_association_change", args=[association.pk]))
        context = {**self.admin_site.each_context(request), "editor": editor, "errors": editor.errors(),
                   "title": _("Alert plans of %(association)s") % {"association": association},
                   "opts": self.model._meta, "original": association}
        return TemplateResponse(request, "admin/associations/association/plans.html", context,
                                status=400 if request.method == "POST" else 200)


@admin.register(Membership)
class MembershipAdmin(AssociationScopedAdmin):
    # Staff accounts are created and given a role by the platform's superusers: the
    # user field would otherwise list every account of every association.
    EDIT_ROLES = ()
    DELETE_ROLES = ()
    list_display = ("user", "association", "role")
    list_filter = ("role",)

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from balise.alerts.models import Acknowledgement, Alert
from balise.associations.scoping import AssociationScopedAdmin, RolePermissions
from balise.console.models import AuditEntry
from balise.tracking.actions import NotAllowed, answer_alert


class AcknowledgementInline(RolePermissions, admin.TabularInline):
    model = Acknowledgement
    extra = 0
    can_delete = False
    fields = ("at", "who", "channel", "answer")
    readonly_fields = fields
    verbose_name_plural = _("answers of contacts and staff")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("who"))
    def who(self, ack):
        if ack.contact_id:
            return ack.contact.name
        if ack.staff_id:
            return ack.staff.get_username()
        return _("on-call line")


@admin.register(Alert)
class AlertAdmin(AssociationScopedAdmin):
    view_action = AuditEntry.Action.VIEW_ALERT
    list_display = ("id", "kind", "state", "duress_mark", "person", "created_at", "acknowledged_at")
    list_filter = ("kind", "state", "duress")
    # Read-only: an alert changes through what happens to it (answers, the console's
    # actions), never through a form. Duress as the red word, not a tick icon.
    readonly_fields = [f.name for f in Alert._meta.fields if f.name != "duress"] + ["duress_mark", "timeline"]
    inlines = [AcknowledgementInline]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("cancelled under duress"), ordering="duress")
    def duress_mark(self, alert):
        """Duress in red, never a reassuring green tick."""
        return format_html('<strong style="color:#b00020">{}</strong>', _("DURESS")) if alert.duress else ""

    @admin.display(description=_("timeline"))
    def timeline(self, alert):
        """The events as sentences (the console's timeline), not raw rows."""
        from balise.console.timeline import describe_events

        return format_html_join(mark_safe("<br>"), "<b>{}</b> {}", ((line.clock, line.text) for line in describe_events(alert)))
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Acknowledge: the association is on it (stops the escalation)"),
                  permissions=["change"])  # not for read-only members
    def acknowledge(self, request, queryset):
        done = 0
        # Only alerts of associations where her role allows it (not where she only looks).
        for alert in self.permitted(request, queryset, self.EDIT_ROLES):
            try:
                answer_alert(alert, channel=Acknowledgement.Channel.STAFF, staff=request.user)
                done += 1
            except NotAllowed:
                pass
        self.message_user(request, ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", done) % {"n": done},
                          messages.SUCCESS if done else messages.WARNING)

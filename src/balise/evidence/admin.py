from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from balise.associations.scoping import AssociationScopedAdmin

from .models import Case, CustodyRecord


class CustodyInline(admin.TabularInline):
    model = CustodyRecord
    fields = ("index", "at", "action", "actor_label", "reason", "legal_reference")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("custody (every access, written before it happened)")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(AssociationScopedAdmin):
    """Read-only: evidence is listened to and exported through `balise evidence`, which
    writes the custody record first."""

    list_display = ("reference", "opened_at", "recording", "state", "segments", "device", "deletion_due_at")
    list_filter = ("state", "recording")
    search_fields = ("reference",)
    fields = ("reference", "session", "association", "person", "device", "alert", "state", "recording", "segments",
              "opened_at", "last_record_at", "closed_at", "truncated_at", "deletion_due_at", "key_destroyed_at")
    readonly_fields = fields
    inlines = [CustodyInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

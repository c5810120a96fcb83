from django.contrib import admin

from balise.programmes.models import FunderAccess, Programme


class FunderAccessInline(admin.TabularInline):
    model = FunderAccess
    extra = 0
    autocomplete_fields = ()


@admin.register(Programme)
class ProgrammeAdmin(admin.ModelAdmin):
    """Programmes are set up by superusers (the operator), with the funder's logins."""

    list_display = ("name", "funder_name", "funder_kind", "starts_on", "ends_on", "device_budget")
    filter_horizontal = ("associations",)
    prepopulated_fields = {"slug": ("name",)}
    inlines = [FunderAccessInline]

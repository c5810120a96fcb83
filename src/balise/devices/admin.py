from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from balise.associations.scoping import AssociationScopedAdmin
from balise.devices.actions import revoke_tokens
from balise.devices.models import Device


@admin.register(Device)
class DeviceAdmin(AssociationScopedAdmin):
    list_display = ("hardware_id", "kind", "status", "holder", "battery_percent", "button_connected", "last_seen_at")
    list_filter = ("kind", "status", "button_connected")
    search_fields = ("hardware_id",)
    readonly_fields = ("battery_percent", "button_connected", "button_seen_at", "station_version", "last_seen_at")

    def save_model(self, request, obj, form, change):
        """A token follows its holder (see balise.devices.actions.reassign): a device
        given to someone else, or to another association, is paired again."""
        super().save_model(request, obj, form, change)
        if change and {"holder", "association"} & set(form.changed_data) and revoke_tokens(obj):
            messages.warning(request, _("The device's pairing was revoked because its holder changed: pair it again "
                                        "for its new holder."))

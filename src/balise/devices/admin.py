from django.contrib import admin

from balise.associations.scoping import AssociationScopedAdmin
from balise.devices.models import Device


@admin.register(Device)
class DeviceAdmin(AssociationScopedAdmin):
    list_display = ("hardware_id", "kind", "status", "holder", "battery_percent", "button_connected", "last_seen_at")
    list_filter = ("kind", "status", "button_connected")
    search_fields = ("hardware_id",)
    readonly_fields = ("battery_percent", "button_connected", "station_version", "last_seen_at")

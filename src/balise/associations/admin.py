from django.contrib import admin

from balise.associations.models import Association, Membership
from balise.associations.scoping import AssociationScopedAdmin, Role


@admin.register(Association)
class AssociationAdmin(AssociationScopedAdmin):
    association_path = "pk"
    EDIT_ROLES = (Role.ADMIN,)
    DELETE_ROLES = ()
    list_display = ("name", "slug", "on_call_number")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Membership)
class MembershipAdmin(AssociationScopedAdmin):
    # Staff accounts are created and given a role by the platform's superusers: the
    # user field would otherwise list every account of every association.
    EDIT_ROLES = ()
    DELETE_ROLES = ()
    list_display = ("user", "association", "role")
    list_filter = ("role",)

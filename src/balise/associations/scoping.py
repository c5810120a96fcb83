"""Every staff query is scoped to the staff member's associations, and what a staff
member may do there follows her role in THAT association (Membership.role), not Django's
per-model permissions: administrators manage, referents and support workers enrol and
follow people, read-only members look. A member of two associations acts in each with
her role there: every permission is decided per object, by the role in the object's
association, and the choices of a form list only objects of associations where her role
allows the change."""

from __future__ import annotations

from django.contrib import admin

from balise.associations.models import Membership
from balise.console.admin_audit import AuditedAdmin

Role = Membership.Role
ALL_ROLES: tuple[str, ...] = tuple(Role.values)


def association_ids(user, roles: tuple[str, ...] | None = None) -> list[int]:
    """The associations where USER has a role (one of ROLES when given)."""
    rows = user.memberships.all()
    if roles is not None:
        rows = rows.filter(role__in=roles)
    return list(rows.values_list("association_id", flat=True))


def roles_by_association(request) -> dict[int, str]:
    """{association id: the caller's role there}, read once per request."""
    if not request.user.is_authenticated:
        return {}
    cached = getattr(request, "_balise_roles", None)
    if cached is None:
        cached = dict(request.user.memberships.values_list("association_id", "role"))
        request._balise_roles = cached
    return cached


def associations_where(request, roles: tuple[str, ...]) -> list[int]:
    return [a for a, role in roles_by_association(request).items() if role in roles]


def association_lookup(model) -> str | None:
    """The lookup from MODEL to its association, or None when it has none."""
    if model._meta.label == "associations.Association":
        return "pk"
    names = {f.name for f in model._meta.fields}
    if "association" in names:
        return "association"
    if "person" in names:
        return "person__association"
    return None


def association_of(obj, path: str) -> int | None:
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
        if obj is None:
            return None
    return obj.pk if last == "pk" else getattr(obj, f"{last}_id")


class RolePermissions:
    """Admin permissions from the caller's role in the object's association; Django's
    own permissions (superusers) still grant everything.

    `association_path` is the lookup from the object a permission is asked about to its
    association: the admin's own rows, or, for an inline, the parent row (Django asks an
    inline's permissions with the parent as OBJ). Without an object (a list, an add
    form), a role allowing the action in any of her associations counts; the rows and
    choices are then narrowed to the associations where it does.
    """

    association_path = "association"
    EDIT_ROLES: tuple[str, ...] = (Role.ADMIN, Role.REFERENT, Role.WORKER)
    DELETE_ROLES: tuple[str, ...] = (Role.ADMIN,)

    def role_allows(self, request, obj, roles: tuple[str, ...]) -> bool:
        if obj is None:
            return bool(associations_where(request, roles))
        return roles_by_association(request).get(association_of(obj, self.association_path)) in roles

    def has_module_permission(self, request):
        return super().has_module_permission(request) or bool(roles_by_association(request))

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.role_allows(request, obj, ALL_ROLES)

    def has_add_permission(self, request, obj=None):
        # (ModelAdmin asks without OBJ; an inline asks with the parent row.)
        args = () if isinstance(self, admin.ModelAdmin) else (obj,)
        return super().has_add_permission(request, *args) or self.role_allows(request, obj, self.EDIT_ROLES)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or self.role_allows(request, obj, self.EDIT_ROLES)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) or self.role_allows(request, obj, self.DELETE_ROLES)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Only objects of associations where her role allows editing can be picked; a
        forged id of another association is then a form error ("select a valid choice")."""
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset") and not request.user.is_superuser:
            lookup = association_lookup(field.queryset.model)
            if lookup is not None:
                field.queryset = field.queryset.filter(
                    **{f"{lookup}__in": associations_where(request, self.EDIT_ROLES)})
        return field


class AssociationScopedAdmin(AuditedAdmin, RolePermissions, admin.ModelAdmin):
    """Admin base: a staff member sees only rows of her own associations, and acts on
    each with her role in its association; what she changes reaches its audit log.

    `association_path` is the lookup from the model to its association.
    """

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.association_path}__in": list(roles_by_association(request))})

    def permitted(self, request, queryset, roles: tuple[str, ...]):
        """The rows of QUERYSET (an action's selection) in associations where her role is
        one of ROLES: a custom action acts on these only."""
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.association_path}__in": associations_where(request, roles)})

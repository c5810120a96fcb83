"""Every staff query is scoped to the staff member's associations, and what a staff
member may do there follows her role in the association (Membership.role), not Django's
per-model permissions: administrators manage, referents and support workers enrol and
follow people, read-only members look."""

from __future__ import annotations

from django.contrib import admin

from balise.associations.models import Membership

Role = Membership.Role


def association_ids(user) -> list[int]:
    return list(user.memberships.values_list("association_id", flat=True))


def _roles(request, association_id=None) -> set[str]:
    """The caller's roles, in one association or in all of hers (cached on the request)."""
    if not request.user.is_authenticated:
        return set()
    cache = request.__dict__.setdefault("_balise_roles", {})
    if association_id not in cache:
        rows = request.user.memberships.all()
        if association_id is not None:
            rows = rows.filter(association_id=association_id)
        cache[association_id] = set(rows.values_list("role", flat=True))
    return cache[association_id]


class RolePermissions:
    """Admin permissions from the caller's role; Django's own permissions (superusers)
    still grant everything. For an object, the role in the object's association counts."""

    EDIT_ROLES: tuple[str, ...] = (Role.ADMIN, Role.REFERENT, Role.WORKER)
    DELETE_ROLES: tuple[str, ...] = (Role.ADMIN,)

    def _object_association(self, obj):
        """None: the caller's roles in all her associations count (so for inlines, whose
        OBJ is the parent row, already scoped by its own admin)."""
        return None

    def _roles_for(self, request, obj) -> set[str]:
        return _roles(request, None if obj is None else self._object_association(obj))

    def has_module_permission(self, request):
        return super().has_module_permission(request) or bool(_roles(request))

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or bool(self._roles_for(request, obj))

    def has_add_permission(self, request, *args):
        return super().has_add_permission(request, *args) or bool(self._roles_for(request, None) & set(self.EDIT_ROLES))

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or bool(self._roles_for(request, obj) & set(self.EDIT_ROLES))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) or bool(
            self._roles_for(request, obj) & set(self.DELETE_ROLES))


class AssociationScopedAdmin(RolePermissions, admin.ModelAdmin):
    """Admin base: a staff member sees and edits only rows of her own associations.

    `association_path` is the lookup from the model to its association.
    """

    association_path = "association"

    def _object_association(self, obj):
        *hops, last = self.association_path.split("__")
        for hop in hops:
            obj = getattr(obj, hop)
        return obj.pk if last == "pk" else getattr(obj, f"{last}_id")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.association_path}__in": association_ids(request.user)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if not request.user.is_superuser and hasattr(field, "queryset"):
            model = field.queryset.model
            ids = association_ids(request.user)
            if model._meta.label == "associations.Association":
                field.queryset = field.queryset.filter(pk__in=ids)
            elif any(f.name == "association" for f in model._meta.fields):
                field.queryset = field.queryset.filter(association__in=ids)
        return field

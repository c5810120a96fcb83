"""Every staff query is scoped to the staff member's associations."""

from __future__ import annotations

from django.contrib import admin


def association_ids(user) -> list[int]:
    return list(user.memberships.values_list("association_id", flat=True))


class AssociationScopedAdmin(admin.ModelAdmin):
    """Admin base: a staff member sees and edits only rows of her own associations.

    `association_path` is the lookup from the model to its association.
    """

    association_path = "association"

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

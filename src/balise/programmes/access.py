"""Who may read which programme: its funders, and the staff of its associations."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from balise.programmes.models import Programme


def funder_programmes(user) -> QuerySet:
    """The programmes USER reads as a funder."""
    if not user.is_authenticated:
        return Programme.objects.none()
    return Programme.objects.filter(funders__user=user)


def is_funder_only(user) -> bool:
    """A funder with no membership in any association."""
    return (user.is_authenticated and not user.memberships.exists()
            and funder_programmes(user).exists())


def readable_programmes(user) -> QuerySet:
    """Programmes whose report USER may read: as a funder, or as a member of one of its
    associations (staff then also read their own association's figures)."""
    if not user.is_authenticated:
        return Programme.objects.none()
    mine = list(user.memberships.values_list("association_id", flat=True))
    return Programme.objects.filter(Q(funders__user=user) | Q(associations__in=mine)).distinct()

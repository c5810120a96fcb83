"""Who must prove a second factor: superusers, and staff whose role in any association
reaches evidence (administrators and referents). Anyone who enrolled a device, even
where it is optional, is asked for it too: a device she chose to add is not skipped."""

from __future__ import annotations

from django_otp import user_has_device

from balise.associations.models import Membership

SECOND_FACTOR_ROLES = (Membership.Role.ADMIN, Membership.Role.REFERENT)


def second_factor_required(user) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.memberships.filter(role__in=SECOND_FACTOR_ROLES).exists()


def is_verified(user) -> bool:
    """True once this session was confirmed by one of the user's devices (django_otp)."""
    check = getattr(user, "is_verified", None)
    return bool(check and check())


def needs_verification(user) -> bool:
    """An authenticated user who may not go on until she gives a one-time code."""
    if not user.is_authenticated or is_verified(user):
        return False
    return second_factor_required(user) or user_has_device(user)


def staff_may_enter(user) -> bool:
    """A staff member whose session is complete: password, and second factor where due."""
    return user.is_authenticated and user.is_active and user.is_staff and not needs_verification(user)

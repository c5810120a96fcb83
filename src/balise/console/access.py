"""Who may use the console, and what she may do there.

Every console view is wrapped in ONE decorator, `staff_view`: today it is Django's
`login_required` plus "has a membership in an association"; a stronger gate (throttled
login, second factor) replaces it here, in one place, without touching the views.

What a member sees is scoped to her associations; what she may do follows her role in
the association of the row (Membership.role), as in the back-office.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from balise.associations.models import Membership
from balise.staff.access import second_factor_redirect

Role = Membership.Role
# Who acts on alerts and people: everyone but read-only members.
ACT_ROLES = frozenset({Role.ADMIN, Role.REFERENT, Role.WORKER})
# Who handles evidence (as in the back-office): revoking a station's evidence key.
EVIDENCE_ROLES = frozenset({Role.ADMIN, Role.REFERENT})
# Who reads the audit log of the association.
AUDIT_ROLES = frozenset({Role.ADMIN})

LOGIN_URL = "console:login"


def roles(request) -> dict[int, str]:
    """{association id: role} of the caller, cached on the request."""
    if "_console_roles" not in request.__dict__:
        request._console_roles = dict(request.user.memberships.values_list("association_id", "role"))
    return request._console_roles


def association_ids(request) -> list[int]:
    return list(roles(request))


def can_act(request, association_id: int) -> bool:
    return roles(request).get(association_id) in ACT_ROLES


def can_handle_evidence(request, association_id: int) -> bool:
    return roles(request).get(association_id) in EVIDENCE_ROLES


def can_audit(request, association_id: int | None = None) -> bool:
    mine = roles(request)
    if association_id is None:
        return any(r in AUDIT_ROLES for r in mine.values())
    return mine.get(association_id) in AUDIT_ROLES


def menu(request) -> dict:
    """Context processor: what the console's menu offers the caller (called by the
    template only where the menu is drawn: no query on other pages)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"console_can_audit": lambda: can_audit(request)}


def require_act(request, association_id: int) -> None:
    if not can_act(request, association_id):
        raise PermissionDenied


def scoped(queryset, request, path: str = "association"):
    """QUERYSET limited to the caller's associations."""
    return queryset.filter(**{f"{path}__in": association_ids(request)})


def get_scoped(queryset, request, path: str = "association", **lookup):
    """One row of the caller's associations, else 404 (the same answer as for a row
    that does not exist: nothing tells that another association has it)."""
    row = scoped(queryset, request, path).filter(**lookup).first()
    if row is None:
        raise Http404
    return row


def staff_view(view):
    """The console's gate: a logged-in member of at least one association, with her
    second factor where her role requires one (balise.staff)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not roles(request):
            raise PermissionDenied
        # Administrators and referents (and anyone who enrolled one): the second factor.
        return second_factor_redirect(request) or view(request, *args, **kwargs)

    return login_required(wrapper, login_url=LOGIN_URL)

"""What the back-office shows of a row: a date and time as the reader's locale writes it
(the models' `__str__` use it, instead of an internal id)."""

from __future__ import annotations

from datetime import datetime

from django.utils import formats, timezone


def moment(dt: datetime | None) -> str:
    if dt is None:
        return "—"
    if timezone.is_aware(dt):
        dt = timezone.localtime(dt)
    return formats.date_format(dt, "SHORT_DATETIME_FORMAT")


def staff_name(user) -> str:
    from django.utils.translation import gettext as _

    if user is None:
        return _("a staff member")
    return user.get_full_name() or user.get_username()

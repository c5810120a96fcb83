"""Slowing down guessing: wrong secrets (pairing codes, contact links) are rows of a table
of their own (a Failure), per source: a hash of the client's address (balise.staff.network),
never the address itself. Past a limit within a window the caller answers "too many
attempts" without looking at what was sent, so that guessing is hopeless."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.db import models, transaction
from django.utils.translation import gettext_lazy as _

KEEP = timedelta(days=1)  # failures older than this are forgotten


class Failure(models.Model):
    """A wrong secret from one source, kept a while (KEEP) to slow down guessing."""

    source = models.CharField(_("source of the request"), max_length=64, db_index=True)
    at = models.DateTimeField(_("date and time"), db_index=True)

    class Meta:
        abstract = True


def source_key(address: str | None) -> str:
    """The rate-limit key of a caller: a hash of her address (no address is stored)."""
    return hashlib.sha256((address or "?").encode()).hexdigest()[:32]


def too_many(model: type[Failure], source: str, now: datetime, window: timedelta, per_source: int,
             total: int | None = None) -> bool:
    """Whether SOURCE (or everyone, past TOTAL) failed too often within WINDOW."""
    recent = model.objects.filter(at__gte=now - window)
    return recent.filter(source=source).count() >= per_source or (total is not None and recent.count() >= total)


def count_failure(model: type[Failure], source: str, now: datetime) -> None:
    with transaction.atomic():
        model.objects.create(source=source, at=now)
        model.objects.filter(at__lt=now - KEEP).delete()

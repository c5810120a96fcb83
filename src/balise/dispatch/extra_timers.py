"""Timers other apps keep as rows (a person's check-in timer...), fired by the
dispatcher's loop right after the escalation timers. An app registers, in its
AppConfig.ready(), a function taking the dispatcher's name and returning how many timers
it fired; the dispatcher imports nothing from the apps above it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError

log = logging.getLogger(__name__)

_sources: list[Callable[[str], int]] = []


def register(run_due: Callable[[str], int]) -> None:
    if run_due not in _sources:
        _sources.append(run_due)


def run_due(owner: str) -> int:
    fired = 0
    for source in _sources:
        try:
            fired += source(owner)
        except DatabaseError:
            raise
        except Exception:  # another app's timer must never stop alert dispatch
            log.exception("timer source %s failed", getattr(source, "__qualname__", source))
    return fired

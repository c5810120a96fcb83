"""The supervision checks as a periodic job of every dispatcher (registered in
SupervisionConfig.ready, see balise.dispatch.periodic): every
SUPERVISION_INTERVAL_SECONDS. Their notices are rows of the dispatcher's outbox
(balise.supervision.checks), sent like every other message."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from balise.supervision.checks import run_checks


def run(now: datetime) -> tuple[int, int]:
    return run_checks(now)


def interval() -> float:
    return settings.SUPERVISION_INTERVAL_SECONDS

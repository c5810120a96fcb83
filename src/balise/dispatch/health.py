"""Liveness and latency of the dispatch pipeline, read from the database so that they
cover every dispatcher process, wherever it runs."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Min
from django.utils import timezone

from balise.dispatch.models import Delivery, DispatcherBeat

BEAT_STALE_AFTER = timedelta(seconds=20)
BACKLOG_STALE_AFTER = timedelta(seconds=30)
LATENCY_WINDOW = timedelta(minutes=5)


def quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def snapshot(latencies: bool = True) -> dict:
    """LATENCIES: read the last 5 minutes' first attempts (up to 20,000 rows) for their
    quantiles: /metrics does; the public /health, which anyone may poll, does not."""
    now = timezone.now()
    beats = list(DispatcherBeat.objects.filter(beat_at__gte=now - BEAT_STALE_AFTER))
    oldest_due = Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lte=now).aggregate(
        oldest=Min("next_attempt_at")
    )["oldest"]
    # Leased and not sent within the lease: nobody is working on it either.
    oldest_lost = Delivery.objects.filter(state=Delivery.State.SENDING, lease_until__lt=now).aggregate(
        oldest=Min("lease_until")
    )["oldest"]
    backlog_age = max([(now - t).total_seconds() for t in (oldest_due, oldest_lost) if t] or [0.0])
    recent = Delivery.objects.filter(state=Delivery.State.SENT, sent_at__gte=now - LATENCY_WINDOW, attempts=1)
    seconds = sorted(
        (sent - created).total_seconds() for created, sent in recent.values_list("created_at", "sent_at")[:20000]
    ) if latencies else []
    return {
        "now": now,
        "dispatchers_alive": len(beats),
        "pending": Delivery.objects.filter(state=Delivery.State.PENDING).count(),
        "sending": Delivery.objects.filter(state=Delivery.State.SENDING).count(),
        "failed_recent": Delivery.objects.filter(state=Delivery.State.FAILED, created_at__gte=now - LATENCY_WINDOW).count(),
        "backlog_age_s": backlog_age,
        "latency": {q: quantile(seconds, q) for q in (0.5, 0.95, 0.99)},
        "latency_count": len(seconds),
        "healthy": bool(beats) and timedelta(seconds=backlog_age) < BACKLOG_STALE_AFTER,
    }

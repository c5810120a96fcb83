"""What the dispatcher calls on every tick (`tick`): every SUPERVISION_INTERVAL_SECONDS,
the supervision checks and then the sending of their notices (a notice that failed is
retried at a later round), on a thread of their own (its own database connection),
never on the dispatch loop."""

from __future__ import annotations

import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from balise.dispatch import leases
from balise.supervision.checks import run_checks
from balise.supervision.messages import notice_text
from balise.supervision.models import SupervisionNotice

log = logging.getLogger(__name__)
BATCH = 20


def _outgoing(row: SupervisionNotice):
    from balise.providers.base import OutgoingMessage

    return OutgoingMessage(key=str(row.id), channel="sms", to=row.recipient, text=notice_text(row.event),
                           language=settings.LANGUAGE_CODE, alert_id=0, alert_kind="", purpose="supervision")


def send_notices(providers, owner: str) -> int:
    """Claim and send the due notices; returns how many went out."""
    from balise.dispatch.dispatcher import Job, send_with_failover

    now = timezone.now()
    if not leases.due(SupervisionNotice, now).exists():
        return 0
    with transaction.atomic():
        ids = leases.claim(SupervisionNotice, owner, BATCH, now)
    rows = SupervisionNotice.objects.filter(id__in=ids, lease_owner=owner).select_related(
        "event__device", "event__person", "event__contact")
    sent = 0
    for row in rows:
        outcome = send_with_failover(providers, Job(row.id, 0, row.attempts, _outgoing(row)))
        with transaction.atomic():
            written = leases.record_outcomes(SupervisionNotice, owner, [(row.id, row.attempts, outcome)], timezone.now())
        sent += written.get(row.id) == "sent"
    return sent


class Supervisor:
    def __init__(self):
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="balise-supervision")
        self.future = None
        # The first checks wait one interval: a dispatcher that just started has not
        # yet heard the heartbeats that arrived while it was down.
        self.last_check = time.monotonic()

    def tick(self, providers, owner: str) -> None:
        now = time.monotonic()
        if self.future is not None and not self.future.done():
            return
        if settings.SUPERVISION_INTERVAL_SECONDS <= 0 or now - self.last_check < settings.SUPERVISION_INTERVAL_SECONDS:
            return
        self.last_check = now
        self.future = self.executor.submit(self._run, providers, owner)

    @staticmethod
    def _run(providers, owner: str) -> None:
        """The checks, then the notices due (new ones, and retries of earlier ones)."""
        try:
            run_checks(timezone.now())
            send_notices(providers, owner)
        except DatabaseError as exc:
            log.warning("supervision: database error (%s)", type(exc).__name__)
        except Exception:  # supervision must never stop alert dispatch
            log.exception("supervision failed")
        finally:
            # Back to the pool (or closed) between runs: this thread keeps no connection.
            connection.close()


_supervisors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tick(dispatcher) -> None:
    """One supervisor per dispatcher, made on its first tick, gone with it."""
    supervisor = _supervisors.get(dispatcher)
    if supervisor is None:
        supervisor = _supervisors[dispatcher] = Supervisor()
        weakref.finalize(dispatcher, supervisor.executor.shutdown, wait=False)
    supervisor.tick(dispatcher.providers, dispatcher.name)


def stop(dispatcher) -> None:
    """Wait for the dispatcher's supervisor to finish its run (tests, orderly shutdown)."""
    supervisor = _supervisors.pop(dispatcher, None)
    if supervisor is not None:
        supervisor.executor.shutdown(wait=True)

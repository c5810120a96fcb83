"""The dispatcher: claims deliveries and due timers from the database and hands
messages to providers, in parallel, without ever losing one.

- Work is claimed with a lease (`lease_until`); a dispatcher that dies leaves leases
  that expire, and whoever claims them next sends with the same idempotency key.
- On PostgreSQL any number of dispatchers share the work (FOR UPDATE SKIP LOCKED); on
  SQLite claims are serialised by IMMEDIATE transactions.
- Database writes happen on the dispatcher's own thread, in batches; provider calls run
  on a thread pool, so a slow provider never holds a database transaction.
- Escalation timers and deliveries carry the alert's epoch: once an alert is
  acknowledged or cancelled, what was written before is fenced off.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from balise.alerts.models import Alert, AlertEvent, LocationFix
from balise.dispatch import extra_timers, leases, outbox, wakeup
from balise.dispatch.messages import render
from balise.dispatch.models import Delivery, DispatcherBeat, EscalationTimer
from balise.dispatch.plans import plan_for
from balise.providers.base import OutgoingMessage, PermanentError, Provider, ProviderError, RateLimitedError
from balise.providers.registry import build_providers
from balise.tracking.sender import ContactMessageSender

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
EVIDENCE_SWEEP_SECONDS = 30.0
# Outcomes of sends are written together at most this often: every write transaction
# is one the API's alert transactions may have to wait for (on SQLite, in sleeps).
OUTCOME_BATCH_SECONDS = 0.05


@dataclass(frozen=True)
class Job:
    delivery_id: uuid.UUID
    alert_id: int
    attempts: int
    message: OutgoingMessage


@dataclass(frozen=True)
class Outcome:
    job: Job
    ok: bool
    provider: str = ""
    provider_ref: str = ""
    permanent: bool = False
    error: str = ""
    retry_after: float | None = None


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, capped; a provider's Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, settings.DISPATCH_BACKOFF_MAX)
    ceiling = min(settings.DISPATCH_BACKOFF_MAX, settings.DISPATCH_BACKOFF_BASE * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + random.random() * ceiling / 2


def send_with_failover(providers: list[Provider], job: Job) -> Outcome:
    """Try each provider in order; the first that takes the message wins."""
    errors = []
    retry_after = None
    for provider in providers:
        if job.message.channel not in provider.channels:
            continue
        try:
            result = provider.send(job.message)
        except PermanentError as exc:
            return Outcome(job, ok=False, provider=provider.name, permanent=True, error=f"{provider.name}: {exc}")
        except RateLimitedError as exc:
            retry_after = exc.retry_after
            errors.append(f"{provider.name}: {exc}")
        except ProviderError as exc:
            errors.append(f"{provider.name}: {exc}")
        except Exception as exc:  # a provider bug must not kill the worker
            log.exception("provider %s crashed", provider.name)
            errors.append(f"{provider.name}: unexpected {type(exc).__name__}")
        else:
            return Outcome(job, ok=True, provider=provider.name, provider_ref=result.provider_ref)
    return Outcome(job, ok=False, error="; ".join(errors) or "no provider for this channel", retry_after=retry_after)


class Dispatcher:
    def __init__(self, *, name: str | None = None, providers: list[Provider] | None = None, workers: int | None = None):
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.providers = providers if providers is not None else build_providers()
        self.workers = workers or settings.DISPATCH_WORKERS
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="balise-send")
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.in_flight: set[uuid.UUID] = set()
        self.wake = wakeup.local_event
        self.stop_event = threading.Event()
        self.started_at = timezone.now()
        self.sent = 0
        self.failed = 0
        self._last_beat = 0.0
        self._last_audit = 0.0
        self._last_sweep = 0.0
        self._last_scan = 0.0
        self._backlog = False
        self.listener: wakeup.PostgresListener | None = None
        self.accepting = False  # takes deliveries handed over at commit (see take)
        self.contact_messages = ContactMessageSender()  # invitations to contacts, off the critical path

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        log.info("dispatcher %s started with %d workers", self.name, self.workers)
        if connection.vendor == "postgresql":
            self.listener = wakeup.PostgresListener(self.stop_event)
            self.listener.start()
        self.accepting = True
        wakeup.local_dispatcher = self
        try:
            while not self.stop_event.is_set():
                self.wake.clear()
                # The database is queried for work when some was signalled, when the last
                # claim may have left some behind, and every poll interval (retries that
                # fall due, expired leases, timers); a finished send alone only records
                # its outcome.
                scan = (wakeup.take_new_work() or self._backlog
                        or time.monotonic() - self._last_scan >= settings.DISPATCH_POLL_SECONDS)
                try:
                    busy = self.tick(scan=scan)
                except DatabaseError as exc:
                    # The database went away (restart, failover): drop the connection and retry.
                    log.warning("dispatcher database error (%s); retrying", type(exc).__name__)
                    connection.close()
                    self._backlog = True
                    self.stop_event.wait(1.0)
                    continue
                if not busy:
                    wait = self._last_scan + settings.DISPATCH_POLL_SECONDS - time.monotonic()
                    if self.in_flight:
                        wait = min(wait, OUTCOME_BATCH_SECONDS)
                    self.wake.wait(max(0.0, wait))
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.accepting = False
        self.stop_event.set()
        self.wake.set()

    def tick(self, scan: bool = True) -> bool:
        # New work first: recording the outcomes of earlier sends can wait a few ms.
        fired, jobs = 0, []
        if scan:
            self._last_scan = time.monotonic()
            fired = self.run_due_timers() + extra_timers.run_due(self.name)
            limit = min(self.workers * 2 - len(self.in_flight), settings.DISPATCH_BATCH)
            jobs, claimed = self.claim_deliveries(limit) if limit > 0 else ([], 0)
            self._backlog = limit <= 0 or claimed >= limit
        for job in jobs:
            self.in_flight.add(job.delivery_id)
            self.pool.submit(self._send, job)
        done = self.drain_outcomes()
        self.contact_messages.tick(self.providers, self.name)
        now = time.monotonic()
        if now - self._last_audit >= settings.AUDITOR_INTERVAL_SECONDS:
            self._last_audit = now
            self.audit()
        if now - self._last_beat >= BEAT_SECONDS:
            self._last_beat = now
            self.beat()
        if now - self._last_sweep >= EVIDENCE_SWEEP_SECONDS:
            self._last_sweep = now
            self.sweep_evidence()
        return bool(done or fired or jobs)

    def _send(self, job: Job) -> None:
        try:
            outcome = send_with_failover(self.providers, job)
        except BaseException as exc:  # never leave a job without an outcome
            outcome = Outcome(job, ok=False, error=f"dispatcher error: {type(exc).__name__}")
        self.outcomes.put(outcome)  # recorded in batches by the loop (see OUTCOME_BATCH_SECONDS)

    def _shutdown(self) -> None:
        self.accepting = False
        if wakeup.local_dispatcher is self:
            wakeup.local_dispatcher = None
        self.pool.shutdown(wait=True)
        self.contact_messages.close()
        try:
            self.drain_outcomes()
        except DatabaseError:
            log.warning("could not record the last outcomes; their leases will expire and they will be retried")
        for provider in self.providers:
            provider.close()
        if self.listener is not None:
            self.listener.join(5.0)  # it checks the stop event every second
        connection.close()  # this thread's: a stopped dispatcher holds no database session
        log.info("dispatcher %s stopped", self.name)

    # -- deliveries ---------------------------------------------------------------

    def claim_deliveries(self, limit: int) -> tuple[list[Job], int]:
        """The jobs to send, and how many rows were leased (fenced ones included)."""
        now = timezone.now()
        if not leases.due(Delivery, now).exists():
            # A plain read first: a tick with nothing to claim opens no transaction. On
            # SQLite a transaction takes the write lock at BEGIN, and empty ones on every
            # tick kept the API's alert transactions waiting on the busy timeout.
            return [], 0
        with transaction.atomic():
            ids = leases.claim(Delivery, self.name, limit, now)
            if not ids:
                return [], 0
            # Read and fence in the claim's transaction: if the database goes away here,
            # the claim rolls back instead of leaving deliveries SENDING that no one sends
            # until their lease expires.
            rows = list(
                Delivery.objects.filter(id__in=ids, lease_owner=self.name).select_related("alert__person", "alert__association")
            )
            fixes = self._latest_fixes({d.alert_id for d in rows})
            fenced = {d.id for d in rows if self._fenced(d)}
            if fenced:
                Delivery.objects.filter(id__in=fenced, lease_owner=self.name).update(
                    state=Delivery.State.CANCELLED, lease_owner="", lease_until=None, last_error="fenced: alert changed"
                )
        return [self._job(d, fixes.get(d.alert_id)) for d in rows if d.id not in fenced], len(ids)

    @staticmethod
    def _job(d: Delivery, fix: LocationFix | None) -> Job:
        text = render(d.template, channel=d.channel, language=d.language, alert=d.alert, contact_id=d.contact_id,
                      fix=fix)
        message = OutgoingMessage(
            key=str(d.id), channel=d.channel, to=d.recipient, text=text, language=d.language,
            alert_id=d.alert_id, alert_kind=d.alert.kind, purpose=d.purpose,
        )
        return Job(d.id, d.alert_id, d.attempts, message)

    def take(self, rows: list[Delivery]) -> None:
        """Deliveries just committed already leased to this dispatcher (see outbox._write):
        send them now, from the committing thread. Never raises into that thread: if this
        fails, their leases expire and they are claimed like any other."""
        try:
            fixes = self._latest_fixes({d.alert_id for d in rows})
            jobs = [self._job(d, fixes.get(d.alert_id)) for d in rows]
            for job in jobs:
                self.in_flight.add(job.delivery_id)
                self.pool.submit(self._send, job)
        except Exception:
            log.exception("hand-over of %d deliveries failed; they go out when their lease expires", len(rows))

    @staticmethod
    def _fenced(d: Delivery) -> bool:
        alert = d.alert
        if d.purpose == Delivery.Purpose.NOTICE:
            return False
        if d.purpose == Delivery.Purpose.ESCALATION:
            return d.epoch != alert.epoch or alert.state != Alert.State.OPEN
        # The first alert messages go out unless the alert was closed (cancel, resolve).
        return not alert.is_active

    @staticmethod
    def _latest_fixes(alert_ids: set[int]) -> dict[int, LocationFix]:
        latest: dict[int, LocationFix] = {}
        for fix in LocationFix.objects.filter(alert_id__in=alert_ids).order_by("alert_id", "-recorded_at", "-id"):
            latest.setdefault(fix.alert_id, fix)
        return latest

    def drain_outcomes(self) -> int:
        outcomes = []
        while True:
            try:
                outcomes.append(self.outcomes.get_nowait())
            except queue.Empty:
                break
        if not outcomes:
            return 0
        try:
            self._record_outcomes(outcomes)
        except DatabaseError:
            # Keep them for the next round rather than letting their leases expire.
            for o in outcomes:
                self.outcomes.put(o)
            raise
        for o in outcomes:
            self.in_flight.discard(o.job.delivery_id)
        return len(outcomes)

    def _record_outcomes(self, outcomes: list[Outcome]) -> None:
        now = timezone.now()
        events = []
        with transaction.atomic():
            written = leases.record_outcomes(
                Delivery, self.name, [(o.job.delivery_id, o.job.attempts, o) for o in outcomes], now)
            for o in outcomes:
                result = written.get(o.job.delivery_id)
                self.sent += result == "sent"
                self.failed += result == "failed"
                if result:
                    events.append(AlertEvent(alert_id=o.job.alert_id, kind=f"delivery_{result}", data={
                        "delivery": str(o.job.delivery_id), "channel": o.job.message.channel,
                        "purpose": o.job.message.purpose, "attempt": o.job.attempts, "provider": o.provider,
                        "error": o.error[:300],
                    }))
                else:
                    log.warning("lease on delivery %s was lost before its outcome was recorded", o.job.delivery_id)
            AlertEvent.objects.bulk_create(events)

    # -- escalation ---------------------------------------------------------------

    def run_due_timers(self) -> int:
        now = timezone.now()
        due = EscalationTimer.objects.filter(
            Q(state=EscalationTimer.State.PENDING, due_at__lte=now)
            | Q(state=EscalationTimer.State.RUNNING, lease_until__lt=now)
        ).order_by("due_at")
        if not due.exists():  # see claim_deliveries
            return 0
        with transaction.atomic():
            if connection.features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            ids = list(due.values_list("id", flat=True)[:50])
            if not ids:
                return 0
            EscalationTimer.objects.filter(id__in=ids).update(
                state=EscalationTimer.State.RUNNING, lease_owner=self.name,
                lease_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
            )
        for timer_id in ids:
            self._fire(timer_id)
        return len(ids)

    def _fire(self, timer_id: int) -> None:
        from balise.alerts.actions import record_event

        with transaction.atomic():
            timer = EscalationTimer.objects.select_for_update().get(id=timer_id)
            if timer.lease_owner != self.name or timer.state != EscalationTimer.State.RUNNING:
                return
            alert = Alert.objects.select_for_update().select_related("association", "person").get(pk=timer.alert_id)
            timer.fired_at = timezone.now()
            if timer.epoch != alert.epoch or alert.state != Alert.State.OPEN or timer.step != alert.escalation_step:
                timer.state = EscalationTimer.State.STALE
                timer.save(update_fields=["state", "fired_at"])
                return
            chain = plan_for(alert.association, alert.kind).chain
            index, skipped = timer.step, 0
            # A step that reaches nobody (no such contact rank, no on-call number) is
            # skipped at once: its delay has passed, the next step is due now.
            while index < len(chain):
                step = chain[index]
                rows = outbox.write_deliveries(alert, step.sends, purpose="escalation",
                                               template="duress" if alert.duress else "alert")
                index += 1
                if rows:
                    record_event(alert, "escalated", step=index, deliveries=len(rows), skipped=skipped,
                                 sends=[{"channel": d.channel, "contact": d.contact_id} for d in rows])
                    break
                skipped += 1
            else:
                if skipped:
                    record_event(alert, "escalation_exhausted", step=index, skipped=skipped)
            alert.escalation_step = index
            alert.save(update_fields=["escalation_step"])
            outbox.arm_next_step(alert)
            timer.state = EscalationTimer.State.FIRED
            timer.save(update_fields=["state", "fired_at"])

    def audit(self) -> int:
        """Re-arm every open alert that has nothing left to do but has escalation steps
        left: a safety net against any path that lost a timer."""
        rearmed = 0
        # One query for all open alerts, not two per alert: this runs on the dispatch loop.
        armed = EscalationTimer.objects.filter(
            alert=OuterRef("pk"), state__in=[EscalationTimer.State.PENDING, EscalationTimer.State.RUNNING]
        )
        unsent = Delivery.objects.filter(alert=OuterRef("pk"), state__in=[Delivery.State.PENDING, Delivery.State.SENDING])
        idle = Alert.objects.filter(~Exists(armed), ~Exists(unsent), state=Alert.State.OPEN).select_related("association")
        for alert in idle:
            if alert.escalation_step >= len(plan_for(alert.association, alert.kind).chain):
                continue
            with transaction.atomic():
                locked = Alert.objects.select_for_update().select_related("association").get(pk=alert.pk)
                if locked.state != Alert.State.OPEN or locked.timers.filter(
                    state__in=[EscalationTimer.State.PENDING, EscalationTimer.State.RUNNING]
                ).exists():
                    continue
                EscalationTimer.objects.create(alert=locked, step=locked.escalation_step, epoch=locked.epoch,
                                               due_at=timezone.now())
                AlertEvent.objects.create(alert=locked, kind="auditor_rearmed", data={"step": locked.escalation_step})
                outbox.wake_dispatchers()
                rearmed += 1
        return rearmed

    @staticmethod
    def sweep_evidence() -> None:
        """Truncation notices for silent recordings, and deletions whose delay is over."""
        from balise.evidence.actions import sweep

        try:
            done = sweep()
        except DatabaseError:
            raise
        except Exception:  # evidence housekeeping must never stop alert dispatch
            log.exception("evidence sweep failed")
            return
        if any(done.values()):
            log.info("evidence sweep: %s", done)

    def beat(self) -> None:
        now = timezone.now()
        DispatcherBeat.objects.update_or_create(
            name=self.name,
            defaults={"started_at": self.started_at, "beat_at": now, "sent": self.sent, "failed": self.failed},
        )


def run_in_thread(dispatcher: Dispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run, name="balise-dispatch", daemon=True)
    thread.start()
    return thread

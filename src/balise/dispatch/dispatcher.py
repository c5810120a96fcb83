"""The dispatcher: claims deliveries and due timers from the database and hands
messages to providers, in parallel, without ever losing one.

- Work is claimed with a lease (`lease_until`); a dispatcher that dies leaves leases
  that expire, and whoever claims them next sends with the same idempotency key.
- On PostgreSQL any number of dispatchers share the work (FOR UPDATE SKIP LOCKED); on
  SQLite claims are serialised by IMMEDIATE transactions.
- Database writes happen on the dispatcher's own thread, in batches; provider calls run
  on an event loop of their own (balise.dispatch.sendloop), so a slow provider never
  holds a database transaction.
- Escalation timers and deliveries carry the alert's epoch: once an alert is
  acknowledged or cancelled, what was written before is fenced off.
- One bad row never stops the others (poison isolation): building a message, firing a
  timer or recording an outcome is contained per row. A row that raises is recorded with
  its error (`faults`, `last_error`), retried with backoff, and after
  DISPATCH_FAULT_ATTEMPTS set aside as failed, with an alert event and an SMS to the
  association's on-call line: she must call the contacts herself. The loop itself
  survives any exception, logs it once and keeps beating.
- Dispatchers beat every DISPATCH_BEAT_SECONDS (see _beat_on); the work leased to one
  silent for DISPATCH_TAKEOVER_SECONDS is taken over by the others (see
  balise.dispatch.leases).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from balise.alerts.models import Alert, AlertEvent, LocationFix
from balise.db import for_update
from balise.dispatch import extra_timers, health, leases, outbox, periodic, wakeup
from balise.dispatch.messages import UNDELIVERABLE, prepare_links, render
from balise.dispatch.models import Delivery, DispatcherBeat, EscalationTimer
from balise.dispatch.plans import Send, plan_for
from balise.dispatch.sendloop import SendLoop
from balise.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
)
from balise.providers.failover import was_taken
from balise.providers.registry import build_providers

log = logging.getLogger(__name__)

# Outcomes of sends are written together at most this often: every write transaction
# is one the API's alert transactions may have to wait for (on SQLite, in sleeps).
OUTCOME_BATCH_SECONDS = 0.05


@dataclass(frozen=True)
class Job:
    delivery_id: uuid.UUID
    alert_id: int
    attempts: int
    message: OutgoingMessage | None  # None: the message could not be built (a fault)


@dataclass(frozen=True)
class Outcome:
    job: Job
    ok: bool
    provider: str = ""
    provider_ref: str = ""
    permanent: bool = False
    error: str = ""
    retry_after: float | None = None
    fault: bool = False  # the row itself raised (see Dispatcher._record_fault)


def is_outage(exc: BaseException) -> bool:
    """A lost or unusable database connection, which says nothing about the row at hand
    (retry the round), as opposed to a fault of the row (a value the database or Python
    cannot handle, a bug on some path): contain it to that row."""
    return isinstance(exc, (OperationalError, InterfaceError, InternalError))


def describe(exc: BaseException) -> str:
    """An exception in a few words (its type and the start of its message), safe for a
    text column: no NUL, no control characters, bounded."""
    text = f"{type(exc).__name__}: {exc}"
    return clean(text)[:200]


def contained():
    """A savepoint when in a transaction, so that a read that fails there leaves the
    transaction usable; outside one, nothing (no transaction opened only to read)."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def clean(text: str, limit: int = 300) -> str:
    """TEXT without the characters a database text column refuses (NUL) or a log line
    should not carry (other control characters)."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text))[:limit]


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, capped; a provider's Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, settings.DISPATCH_BACKOFF_MAX)
    ceiling = min(settings.DISPATCH_BACKOFF_MAX, settings.DISPATCH_BACKOFF_BASE * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + random.random() * ceiling / 2


async def deliver(providers: list[Provider], job: Job) -> Outcome:
    """Try each provider in order; the first that takes the message wins. On the send
    loop (balise.dispatch.sendloop)."""
    errors = []
    retry_after = None
    for provider in providers:
        if job.message.channel not in provider.channels or provider.name in job.message.avoid:
            continue  # (avoid: the providers a carrier already failed, see balise.dispatch.carrier)
        started = time.time()
        try:
            result = await provider.send_async(job.message)
        except PermanentError as exc:
            return Outcome(job, ok=False, provider=provider.name, permanent=True,
                           error=clean(f"{provider.name}: {exc}"))
        except AmbiguousError as exc:
            # It may have been taken: ask before sending it elsewhere (balise.providers.failover).
            # (a lookup is a blocking call: on a worker thread)
            taken = await asyncio.get_running_loop().run_in_executor(None, was_taken, provider, job.message, started)
            if taken is not None:
                return Outcome(job, ok=True, provider=provider.name, provider_ref=clean(taken.provider_ref, 200))
            errors.append(f"{provider.name}: {exc}")
        except RateLimitedError as exc:
            retry_after = exc.retry_after
            errors.append(f"{provider.name}: {exc}")
        except ProviderError as exc:
            errors.append(f"{provider.name}: {exc}")
        except Exception as exc:  # a provider bug must not kill the worker
            log.exception("provider %s crashed on delivery %s", provider.name, job.delivery_id)
            errors.append(f"{provider.name}: unexpected {type(exc).__name__}")
        else:
            # (what a provider answers is written to the database: keep it writable)
            return Outcome(job, ok=True, provider=provider.name, provider_ref=clean(result.provider_ref, 200))
    return Outcome(job, ok=False, error=clean("; ".join(errors) or "no provider for this channel"),
                   retry_after=retry_after)


def send_with_failover(providers: list[Provider], job: Job) -> Outcome:
    """`deliver` for a caller with no event loop of its own (tests)."""

    async def once() -> Outcome:
        try:
            return await deliver(providers, job)
        finally:
            for provider in providers:
                await provider.aclose()

    return asyncio.run(once())


class Dispatcher:
    def __init__(self, *, name: str | None = None, providers: list[Provider] | None = None, workers: int | None = None):
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.providers = providers if providers is not None else build_providers()
        self.workers = workers or settings.DISPATCH_WORKERS
        self.sender = SendLoop(self.workers)
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.handed: queue.SimpleQueue[list[Delivery]] = queue.SimpleQueue()  # see take
        self.in_flight: set[uuid.UUID] = set()
        self.wake = wakeup.local_event
        self.stop_event = threading.Event()
        self.started_at = timezone.now()
        self.sent = 0
        self.failed = 0
        self._last_round = time.monotonic()  # when the loop last began a round
        self.beater: threading.Thread | None = None
        self.beat_at = None  # the last beat written (see _still_leased)
        self._last_audit = 0.0
        self._last_scan = 0.0
        self._backlog = False
        self._errors: dict[str, str] = {}  # step -> the error last logged for it (logged once)
        self.listener: wakeup.PostgresListener | None = None
        self.accepting = False  # takes deliveries handed over at commit (see take)
        self.periodic = periodic.Runner()  # other apps' periodic jobs (supervision...), off the loop

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        log.info("dispatcher %s started with %d workers", self.name, self.workers)
        if connection.vendor == "postgresql":
            self.listener = wakeup.PostgresListener(self.stop_event)
            self.listener.start()
        try:
            # Beat before taking any lease: rows handed over at commit are leased to this
            # dispatcher, and a live one's leases must never look like a dead one's. (If
            # the database is not there yet, the beat thread tries again.)
            try:
                self.beat()
            except Exception as exc:
                self._report("beat", exc)
                if isinstance(exc, DatabaseError):
                    connection.close()
            wakeup.local_dispatcher = self
            self.beater = threading.Thread(target=self._beat_on, name="balise-beat", daemon=True)
            self.beater.start()
            while not self.stop_event.is_set():
                self._last_round = time.monotonic()
                self.wake.clear()
                # The database is queried for work when some was signalled, when the last
                # claim may have left some behind, and every poll interval (retries that
                # fall due, expired leases, timers); a finished send alone only records
                # its outcome.
                scan = (wakeup.take_new_work() or self._backlog
                        or time.monotonic() - self._last_scan >= settings.DISPATCH_POLL_SECONDS)
                try:
                    busy = self.tick(scan=scan)
                except Exception as exc:  # nothing stops the loop
                    if is_outage(exc):
                        # The database went away (restart, failover): drop the connection and retry.
                        log.warning("dispatcher database error (%s); retrying", type(exc).__name__)
                    else:
                        self._report("loop", exc)
                    if isinstance(exc, DatabaseError):
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

    def close(self) -> None:
        """For a dispatcher driven by tick() (tests): wait for its sends and periodic jobs."""
        self.sender.close(self.providers)
        self.periodic.close()

    @property
    def contact_messages(self) -> periodic.Runner:
        """The former sender of messages to contacts, now rows of the one outbox: its
        close() (which tests call) closes the periodic jobs."""
        return self.periodic

    def stop(self) -> None:
        self.accepting = False
        self.stop_event.set()
        self.wake.set()

    def tick(self, scan: bool = True) -> bool:
        """One round. Each step is contained (see _step): one that raises is logged and
        the others still run; only a lost database connection ends the round."""
        # New work first: recording the outcomes of earlier sends can wait a few ms.
        handed = self._step("hand-over", self.send_handed, 0)
        fired, jobs = 0, []
        if scan:
            self._last_scan = time.monotonic()
            fired = self._step("timers", self.run_due_timers, 0)
            fired += self._step("extra timers", lambda: extra_timers.run_due(self.name), 0)
            limit = min(self.workers * 2 - len(self.in_flight), settings.DISPATCH_BATCH)
            jobs, claimed = self._step("claim", lambda: self.claim_deliveries(limit), ([], 0)) if limit > 0 else ([], 0)
            self._backlog = limit <= 0 or claimed >= limit
        for job in jobs:
            self.in_flight.add(job.delivery_id)
            self.sender.submit(self._send(job))
        done = self._step("outcomes", self.drain_outcomes, 0)
        self._step("periodic", self.periodic.tick)  # (technical alarms: balise.supervision)
        now = time.monotonic()
        if now - self._last_audit >= settings.AUDITOR_INTERVAL_SECONDS:
            self._last_audit = now
            self._step("audit", self.audit)
        return bool(done or fired or jobs or handed)

    def _beat_on(self) -> None:
        """Beat every DISPATCH_BEAT_SECONDS, on a thread (and database connection) of its
        own: a slow round (a busy machine, a wait for a lock) is not taken for a death and
        its leases are not taken over. A loop that has not begun a round for a lease's time
        is as good as dead: the beats stop, its work is taken over, /health turns red."""
        try:
            while not self.stop_event.wait(settings.DISPATCH_BEAT_SECONDS):
                if time.monotonic() - self._last_round > max(settings.DISPATCH_LEASE_SECONDS,
                                                             3 * settings.DISPATCH_POLL_SECONDS):
                    self._report("beat", RuntimeError("the dispatch loop is stuck; no heartbeat"))
                    continue
                try:
                    self.beat()
                except Exception as exc:
                    self._report("beat", exc)
                    if isinstance(exc, DatabaseError):
                        connection.close()  # (this thread's)
                else:
                    self._errors.pop("beat", None)
        finally:
            connection.close()

    def _step(self, what: str, step, default=None):
        """Run STEP; an exception other than a lost database is logged (once while it
        repeats) and DEFAULT returned. A lost database ends the round (see run)."""
        try:
            result = step()
        except Exception as exc:
            if is_outage(exc):
                raise
            self._report(what, exc)
            return default
        self._errors.pop(what, None)
        return result

    def _report(self, what: str, exc: BaseException, row=None) -> None:
        """Log EXC once: the same error of the same step is not logged again until the
        step has succeeded in between (a failing step runs every poll interval)."""
        signature = describe(exc)
        if row is None and self._errors.get(what) == signature:
            log.debug("dispatcher %s: %s failed again (%s)", self.name, what, type(exc).__name__)
            return
        if row is None:
            self._errors[what] = signature
        log.error("dispatcher %s: %s failed%s (%s)", self.name, what, f" on {row}" if row else "",
                  type(exc).__name__, exc_info=exc)

    async def _send(self, job: Job) -> None:
        try:
            if self._lease_in_doubt() and not await asyncio.get_running_loop().run_in_executor(
                    None, self._still_leased, job):
                log.warning("delivery %s was taken over before it was sent; not sent here", job.delivery_id)
                outcome = Outcome(job, ok=False, error="lease taken over before sending")  # ignored: not ours
            else:
                outcome = await deliver(self.providers, job)
        except BaseException as exc:  # never leave a job without an outcome
            outcome = Outcome(job, ok=False, error=f"dispatcher error: {type(exc).__name__}")
        self.outcomes.put(outcome)  # recorded in batches by the loop (see OUTCOME_BATCH_SECONDS)

    def _shutdown(self) -> None:
        self.accepting = False
        self.stop_event.set()  # (also when the loop died: the beats and the listener stop)
        if self.beater is not None:
            self.beater.join(30)
        if wakeup.local_dispatcher is self:
            wakeup.local_dispatcher = None
        self.sender.close(self.providers)
        self.periodic.close()
        try:
            self.drain_outcomes()
        except Exception:
            log.warning("could not record the last outcomes; their leases will expire and they will be retried")
        try:
            # What is still leased to this dispatcher is free for the others at once.
            silent = max(timedelta(seconds=settings.DISPATCH_TAKEOVER_SECONDS), health.BEAT_STALE_AFTER)
            DispatcherBeat.objects.filter(name=self.name).update(beat_at=timezone.now() - silent - timedelta(seconds=1))
        except Exception:
            log.warning("could not mark dispatcher %s as stopped", self.name)
        for provider in self.providers:
            try:
                provider.close()
            except Exception:
                log.exception("provider %s did not close cleanly", provider.name)
        if self.listener is not None:
            self.listener.join(5.0)  # it checks the stop event every second
        connection.close()  # this thread's: a stopped dispatcher holds no database session
        log.info("dispatcher %s stopped", self.name)

    # -- deliveries ---------------------------------------------------------------

    def claim_deliveries(self, limit: int) -> tuple[list[Job], int]:
        """The jobs to send, and how many rows were leased (fenced and faulty ones included)."""
        now = timezone.now()
        dead = leases.dead_owners(now, self.name)
        if not leases.due(Delivery, now, dead).exists():
            # A plain read first: a tick with nothing to claim opens no transaction. On
            # SQLite a transaction takes the write lock at BEGIN, and empty ones on every
            # tick kept the API's alert transactions waiting on the busy timeout.
            return [], 0
        with transaction.atomic():
            ids = leases.claim(Delivery, self.name, limit, now, dead)
            if not ids:
                return [], 0
            # Read and fence in the claim's transaction: if the database goes away here,
            # the claim rolls back instead of leaving deliveries SENDING that no one sends
            # until their lease expires.
            rows, unreadable = self._load(ids)
            fixes = self._latest_fixes({d.alert_id for d in rows})
            fenced = {d.id for d in rows if self._fenced(d)}
            if fenced:
                Delivery.objects.filter(id__in=fenced, lease_owner=self.name).update(
                    state=Delivery.State.CANCELLED, lease_owner="", lease_until=None, last_error="fenced: alert changed"
                )
        jobs = self._jobs([d for d in rows if d.id not in fenced], fixes)
        for row_id, alert_id, attempts, faults, exc in unreadable:
            self._fault(Job(row_id, alert_id, attempts, None), "read", exc, faults)
        return jobs, len(ids)

    def _load(self, ids: list) -> tuple[list[Delivery], list[tuple]]:
        """The deliveries IDS still leased here, with their alert; and (id, alert id,
        attempts, faults, exception) for those that cannot be read (a value out of the range
        Python handles, say). In the caller's transaction."""
        query = (Delivery.objects.filter(lease_owner=self.name).select_related("alert__person", "alert__association")
                 .defer(*(f"alert__{name}" for name in DEVICE_TIMES)))
        try:
            with transaction.atomic():  # (a savepoint: a failed read leaves the claim usable)
                return list(query.filter(id__in=ids)), []
        except Exception as exc:
            if is_outage(exc):
                raise
        rows, unreadable = [], []
        for row_id in ids:  # one at a time, to set aside only the rows that cannot be read
            try:
                with transaction.atomic():
                    rows.extend(query.filter(id=row_id))
            except Exception as exc:
                if is_outage(exc):
                    raise
                unreadable.append((row_id, *Delivery.objects.filter(id=row_id).values_list(
                    "alert_id", "attempts", "faults").get(), exc))
        return rows, unreadable

    def _jobs(self, rows: list[Delivery], fixes: dict[int, LocationFix]) -> list[Job]:
        """A job per row; a row whose message cannot be built is recorded as a fault."""
        jobs = []
        try:  # the links of the SMS not made when written, in one statement (else one by one as rendered)
            with contained():
                prepare_links(rows)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("could not store a batch of short links (%s); stored one by one", type(exc).__name__)
        for d in rows:
            try:
                jobs.append(self._job(d, fixes.get(d.alert_id)))
            except Exception as exc:
                self._fault(Job(d.id, d.alert_id, d.attempts, None), "render", exc, d.faults)
        return jobs

    def _fault(self, job: Job, what: str, exc: BaseException, faults: int = 0) -> None:
        """A row that raised (FAULTS times before): its outcome is recorded with the others
        (see _record_fault). Logged with its traceback the first time only."""
        if faults == 0:
            self._report(what, exc, row=f"delivery {job.delivery_id}")
        else:
            log.warning("dispatcher %s: %s failed again on delivery %s (%s)", self.name, what, job.delivery_id,
                        type(exc).__name__)
        if is_outage(exc):  # (the database, not the row: an ordinary retry)
            outcome = Outcome(job, ok=False, error=clean(f"{what}: database unavailable"))
        else:
            outcome = Outcome(job, ok=False, error=clean(f"{what}: {describe(exc)}"), fault=True)
        self.in_flight.add(job.delivery_id)
        self.outcomes.put(outcome)

    @staticmethod
    def _job(d: Delivery, fix: LocationFix | None) -> Job:
        if d.alert_id is None:  # a message of no alert: its words were written with it
            message = OutgoingMessage(key=str(d.id), channel=d.channel, to=d.recipient, text=d.text,
                                      language=d.language, alert_id=0, alert_kind="", purpose=d.purpose)
            return Job(d.id, 0, d.attempts, message)
        text = render(d.template, channel=d.channel, language=d.language, alert=d.alert, contact_id=d.contact_id,
                      fix=fix, link=d.page_link)
        message = OutgoingMessage(
            key=str(d.id), channel=d.channel, to=d.recipient, text=text, language=d.language,
            alert_id=d.alert_id, alert_kind=d.alert.kind, purpose=d.purpose,
            avoid=tuple(p for p in d.avoid_providers.split(",") if p),
        )
        return Job(d.id, d.alert_id, d.attempts, message)

    def take(self, rows: list[Delivery]) -> None:
        """Deliveries just committed already leased to this dispatcher (see outbox._write),
        called on the committing thread (a web request's): queued for the dispatch loop,
        which renders and sends them at once. Nothing here touches the database, so the
        request answers without waiting for its messages to be built. Should the process
        die first, their leases expire and they are claimed like any other."""
        self.handed.put(rows)
        self.wake.set()

    def send_handed(self) -> int:
        """Render and send the deliveries handed over at commit (see take)."""
        rows = []
        while True:
            try:
                rows.extend(self.handed.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return 0
        try:
            fixes = self._latest_fixes({d.alert_id for d in rows})
            jobs = self._jobs(rows, fixes)
        except Exception as exc:
            if is_outage(exc):
                for d in rows:  # (kept for the next round)
                    self.handed.put([d])
                raise
            log.exception("hand-over of %d deliveries failed; they go out when their lease expires", len(rows))
            return 0
        for job in jobs:
            self.in_flight.add(job.delivery_id)
            self.sender.submit(self._send(job))
        return len(rows)

    @staticmethod
    def _fenced(d: Delivery) -> bool:
        alert = d.alert
        if alert is None or d.purpose == Delivery.Purpose.NOTICE:
            return False
        if d.purpose == Delivery.Purpose.ESCALATION:
            return d.epoch != alert.epoch or alert.state != Alert.State.OPEN
        # The first alert messages go out unless the alert was closed (cancel, resolve).
        return not alert.is_active

    @staticmethod
    def _latest_fixes(alert_ids: set[int]) -> dict[int, LocationFix]:
        """The latest fix of each alert that can be read: a time beyond year 9999 in UTC
        (stored by PostgreSQL, which Python cannot represent) is skipped in the query, and
        an alert whose fixes still cannot be read goes without (its messages say the
        position is not known, and carry the live link)."""
        latest: dict[int, LocationFix] = {}
        alert_ids = {a for a in alert_ids if a}  # (messages of no alert have none)
        if not alert_ids:
            return latest
        fixes = LocationFix.objects.filter(recorded_at__lte=LATEST_READABLE).order_by("alert_id", "-recorded_at", "-id")
        try:
            with contained():
                for fix in fixes.filter(alert_id__in=alert_ids):
                    latest.setdefault(fix.alert_id, fix)
            return latest
        except Exception as exc:
            if is_outage(exc):
                raise
        for alert_id in alert_ids:
            try:
                with contained():
                    fix = fixes.filter(alert_id=alert_id).first()
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.warning("the location fixes of alert %s cannot be read (%s)", alert_id, type(exc).__name__)
                continue
            if fix is not None:
                latest[alert_id] = fix
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
        except Exception as exc:
            if is_outage(exc):
                # Keep them for the next round rather than letting their leases expire.
                for o in outcomes:
                    self.outcomes.put(o)
                raise
            self._report("outcomes", exc)
            self._record_one_by_one(outcomes)
        for o in outcomes:
            self.in_flight.discard(o.job.delivery_id)
        return len(outcomes)

    def _record_one_by_one(self, outcomes: list[Outcome]) -> None:
        """A batch of outcomes failed to record: each on its own, so that one row's
        fault stays with that row."""
        for o in outcomes:
            try:
                self._record_outcomes([o])
            except Exception as exc:
                if is_outage(exc):
                    self.outcomes.put(o)
                    raise
                self._report("outcome", exc, row=f"delivery {o.job.delivery_id}")
                if o.fault:
                    continue  # (recording a fault failed: the lease expires, it is tried again)
                try:
                    self._record_outcomes([Outcome(o.job, ok=False, error=f"outcome: {describe(exc)}", fault=True)])
                except Exception as again:
                    if is_outage(again):
                        raise
                    self._report("outcome", again, row=f"delivery {o.job.delivery_id}")

    def _record_outcomes(self, outcomes: list[Outcome]) -> None:
        now = timezone.now()
        events = []
        faults = [o for o in outcomes if o.fault]
        sends = [o for o in outcomes if not o.fault]
        with transaction.atomic():
            written = leases.record_outcomes(
                Delivery, self.name, [(o.job.delivery_id, o.job.attempts, o) for o in sends], now)
            for o in faults:
                written[o.job.delivery_id] = self._record_fault(o, now)
            for o in outcomes:
                result = written.get(o.job.delivery_id)
                self.sent += result == "sent"
                self.failed += result == "failed"
                if result and o.job.alert_id:
                    message = o.job.message
                    events.append(AlertEvent(alert_id=o.job.alert_id, kind=f"delivery_{result}", data={
                        "delivery": str(o.job.delivery_id), "channel": message.channel if message else "",
                        "purpose": message.purpose if message else "", "attempt": o.job.attempts,
                        "provider": o.provider, "error": o.error[:300], **({"fault": True} if o.fault else {}),
                    }))
                elif not result:
                    log.warning("lease on delivery %s was lost before its outcome was recorded", o.job.delivery_id)
            AlertEvent.objects.bulk_create(events)

    def _record_fault(self, o: Outcome, now) -> str | None:
        """Write a fault on its row if this dispatcher still holds it: retried with backoff,
        or once it has raised DISPATCH_FAULT_ATTEMPTS times, failed, and the association's
        on-call line told. Returns "retry", "failed" or None (the lease was lost)."""
        rows = Delivery.objects.filter(id=o.job.delivery_id, lease_owner=self.name, state=Delivery.State.SENDING)
        if connection.features.has_select_for_update:
            rows = for_update(rows)
        found = rows.values_list("faults", "template").first()
        if found is None:
            return None
        faults, template = found[0] + 1, found[1]
        cleared = {"lease_owner": "", "lease_until": None, "last_error": o.error[:300], "faults": faults}
        if faults < settings.DISPATCH_FAULT_ATTEMPTS:
            Delivery.objects.filter(id=o.job.delivery_id).update(
                state=Delivery.State.PENDING, next_attempt_at=now + timedelta(seconds=backoff_seconds(faults)), **cleared)
            return "retry"
        Delivery.objects.filter(id=o.job.delivery_id).update(state=Delivery.State.FAILED, **cleared)
        log.error("delivery %s set aside after %d faults", o.job.delivery_id, faults)
        if not o.job.alert_id:
            log.error("message %s (of no alert) set aside after %d faults", o.job.delivery_id, faults)
        elif template != UNDELIVERABLE:  # (a notice that cannot be sent calls for no other notice)
            self._notify_on_call(o.job.alert_id, delivery=str(o.job.delivery_id))
        return "failed"

    def _notify_on_call(self, alert_id: int, **why) -> None:
        """An SMS to the association's on-call line (once per alert): one of this alert's
        messages could not be sent, she must call the contacts herself. In the caller's
        transaction; never raises (the row is set aside all the same)."""
        try:
            with transaction.atomic():
                if Delivery.objects.filter(alert_id=alert_id, template=UNDELIVERABLE).exists():
                    return
                alert = Alert.objects.defer(*DEVICE_TIMES).select_related("association", "person").get(pk=alert_id)
                rows = outbox.write_deliveries(alert, (Send("sms", "on_call"),), purpose=Delivery.Purpose.NOTICE,
                                               template=UNDELIVERABLE)
                AlertEvent.objects.create(alert=alert, kind="on_call_notified", data={
                    "reason": "undeliverable", "deliveries": len(rows), **why})
                if not rows:
                    log.error("alert %s: a message could not be sent and the association has no on-call line", alert_id)
        except Exception as exc:
            if is_outage(exc):
                raise
            self._report("on-call notice", exc, row=f"alert {alert_id}")

    # -- escalation ---------------------------------------------------------------

    def run_due_timers(self) -> int:
        now = timezone.now()
        dead = leases.dead_owners(now, self.name)
        due = EscalationTimer.objects.filter(
            Q(state=EscalationTimer.State.PENDING, due_at__lte=now)
            | leases.held_by_the_gone(now, dead, state=EscalationTimer.State.RUNNING)
        ).order_by("due_at")
        if not due.exists():  # see claim_deliveries
            return 0
        with transaction.atomic():
            if connection.features.has_select_for_update_skip_locked:
                due = for_update(due, skip_locked=True)
            ids = list(due.values_list("id", flat=True)[:50])
            if not ids:
                return 0
            EscalationTimer.objects.filter(id__in=ids).update(
                state=EscalationTimer.State.RUNNING, lease_owner=self.name,
                lease_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
            )
        for timer_id in ids:
            try:
                self._fire(timer_id)
            except Exception as exc:  # one timer's fault stays with it
                if is_outage(exc):
                    raise
                self._report("escalation", exc, row=f"timer {timer_id}")
                self._timer_fault(timer_id, exc)
        return len(ids)

    def _timer_fault(self, timer_id: int, exc: BaseException) -> None:
        """A timer that raised: due again after a backoff, or failed after
        DISPATCH_FAULT_ATTEMPTS faults (the auditor leaves its step alone then), with an
        alert event and a notice to the on-call line."""
        with transaction.atomic():
            timer = for_update(EscalationTimer.objects).filter(
                id=timer_id, lease_owner=self.name, state=EscalationTimer.State.RUNNING).first()
            if timer is None:
                return
            timer.faults += 1
            timer.lease_owner, timer.lease_until = "", None
            failed = timer.faults >= settings.DISPATCH_FAULT_ATTEMPTS
            if failed:
                timer.state = EscalationTimer.State.FAILED
            else:
                timer.state = EscalationTimer.State.PENDING
                timer.due_at = timezone.now() + timedelta(seconds=backoff_seconds(timer.faults))
            timer.save(update_fields=["faults", "lease_owner", "lease_until", "state", "due_at"])
            AlertEvent.objects.create(alert_id=timer.alert_id, kind="escalation_failed" if failed else "escalation_fault",
                                      data={"step": timer.step, "faults": timer.faults, "error": describe(exc)})
            if failed:
                self._notify_on_call(timer.alert_id, timer=timer_id, step=timer.step)

    def _fire(self, timer_id: int) -> None:
        from balise.alerts.actions import record_event

        with transaction.atomic():
            timer = for_update(EscalationTimer.objects).get(id=timer_id)
            if timer.lease_owner != self.name or timer.state != EscalationTimer.State.RUNNING:
                return
            alert = (for_update(Alert.objects).select_related("association", "person").defer(*DEVICE_TIMES)
                     .get(pk=timer.alert_id))
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
        left: a safety net against any path that lost a timer. A step whose timer failed
        (see _timer_fault) is not re-armed: the on-call line was told."""
        rearmed = 0
        # One query for all open alerts, not two per alert: this runs on the dispatch loop.
        armed = EscalationTimer.objects.filter(
            alert=OuterRef("pk"), state__in=[EscalationTimer.State.PENDING, EscalationTimer.State.RUNNING]
        )
        failed = EscalationTimer.objects.filter(alert=OuterRef("pk"), state=EscalationTimer.State.FAILED,
                                                epoch=OuterRef("epoch"), step=OuterRef("escalation_step"))
        unsent = Delivery.objects.filter(alert=OuterRef("pk"), state__in=[Delivery.State.PENDING, Delivery.State.SENDING])
        idle = (Alert.objects.filter(~Exists(armed), ~Exists(unsent), ~Exists(failed), state=Alert.State.OPEN)
                .select_related("association").defer(*DEVICE_TIMES))
        for alert in idle:
            try:
                rearmed += self._rearm(alert)
            except Exception as exc:  # one alert's fault stays with it
                if is_outage(exc):
                    raise
                self._report("audit", exc, row=f"alert {alert.pk}")
        return rearmed

    def _rearm(self, alert: Alert) -> int:
        if alert.escalation_step >= len(plan_for(alert.association, alert.kind).chain):
            return 0
        with transaction.atomic():
            locked = for_update(Alert.objects).select_related("association").defer(*DEVICE_TIMES).get(pk=alert.pk)
            if locked.state != Alert.State.OPEN or locked.timers.filter(
                state__in=[EscalationTimer.State.PENDING, EscalationTimer.State.RUNNING]
            ).exists():
                return 0
            EscalationTimer.objects.create(alert=locked, step=locked.escalation_step, epoch=locked.epoch,
                                           due_at=timezone.now())
            AlertEvent.objects.create(alert=locked, kind="auditor_rearmed", data={"step": locked.escalation_step})
            outbox.wake_dispatchers()
        return 1

    def _lease_in_doubt(self) -> bool:
        """Others take over the leases of a dispatcher whose recorded beat is older than
        DISPATCH_TAKEOVER_SECONDS: whether this one's is nearly that old (a starved beat
        thread, a beat stuck on a lock). The leases of one that never beat are not taken
        over."""
        beat_at = self.beat_at
        return beat_at is not None and (
            (timezone.now() - beat_at).total_seconds() >= settings.DISPATCH_TAKEOVER_SECONDS - 1)

    def _still_leased(self, job: Job) -> bool:
        """Whether JOB, its lease in doubt, may still be sent here: the lease is read again
        before sending, so that a takeover does not make the same message go twice. Any
        doubt sends: a message twice is better than none. On a worker thread."""
        try:
            return Delivery.objects.filter(id=job.delivery_id, lease_owner=self.name).exists()
        except Exception:
            return True
        finally:
            connection.close()  # a sending thread keeps no database session

    def beat(self) -> None:
        now = timezone.now()
        DispatcherBeat.objects.update_or_create(
            name=self.name,
            defaults={"started_at": self.started_at, "beat_at": now, "sent": self.sent, "failed": self.failed},
        )
        self.beat_at = now  # what the others read, once it is written
        # Deliveries are handed over to this dispatcher only once it has beaten (see run).
        self.accepting = not self.stop_event.is_set()


# Times that come from the device, not from this server: the dispatcher never reads them
# (PostgreSQL stores years Python cannot represent, and reading one raises).
DEVICE_TIMES = ("triggered_at",)
# The last instant Python can represent (in UTC, as the database gives it).
LATEST_READABLE = datetime.max.replace(tzinfo=dt_timezone.utc)


def run_in_thread(dispatcher: Dispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run, name="balise-dispatch", daemon=True)
    thread.start()
    return thread


class Supervisor:
    """Runs a dispatcher on a thread and starts a new one should that thread ever die
    (`balise serve`): an exception that escapes the loop must not leave the web server
    accepting alerts that nobody sends. The new dispatcher has a new name; the dead one's
    leases are taken over as any dead dispatcher's."""

    def __init__(self, make=Dispatcher, check_seconds: float = 1.0, restart_delay: float = 1.0):
        self.make = make
        self.check_seconds = check_seconds
        self.restart_delay = restart_delay
        self.stop_event = threading.Event()
        self.dispatcher: Dispatcher | None = None
        self.restarts = 0
        self.thread = threading.Thread(target=self._run, name="balise-dispatch-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                dispatcher = self.make()
            except Exception:
                log.exception("could not start a dispatcher; trying again")
                self.stop_event.wait(self.restart_delay)
                continue
            self.dispatcher = dispatcher
            worker = run_in_thread(dispatcher)
            while worker.is_alive() and not self.stop_event.is_set():
                worker.join(self.check_seconds)
            if self.stop_event.is_set():
                dispatcher.stop()
                worker.join(30)
                return
            self.restarts += 1
            log.error("dispatcher thread %s died; starting a new one", dispatcher.name)
            self.stop_event.wait(self.restart_delay)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.thread.join(timeout)

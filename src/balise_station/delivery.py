"""Delivery of the queue to the server, with backoff and jitter.

Lanes so that nothing slow ever stands in front of an alert: the alert lane
sends new alerts (its backoff is capped at a few seconds), the background lane
sends fixes and heartbeats, and the evidence lane (``balise_station.evidence``)
waits for ``alerts_idle`` before each upload. Each alert has a lock shared with the modem
fallback, so an alert is never posted while the station is sending its SMS
itself: the attempt after the SMS carries ``sms_sent_by_device``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from balise_station.api import ApiResult, DeviceApi, Outcome
from balise_station.outbox import Outbox
from balise_station.waits import wait_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float

    def delay(self, attempt: int, rand: float) -> float:
        """Exponential backoff with equal jitter: half fixed, half random (``rand`` in [0, 1))."""
        d = min(self.cap_s, self.base_s * 2 ** min(attempt, 30))
        return d / 2 + rand * d / 2


ALERT_BACKOFF = Backoff(0.25, 8.0)
# The token itself is refused (revoked, device re-paired, server data re-created): only a
# new pairing mends it; until then the alert waits, and the modem fallback texts.
TOKEN_REFUSED = (401, 403, 410)
BACKGROUND_BACKOFF = Backoff(2.0, 300.0)
# An outage shorter than this is not worth an SMS to the association's on-call line.
OUTAGE_REPORT_S = 60.0


class Sender:
    def __init__(self, outbox: Outbox, api: DeviceApi, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 alert_backoff: Backoff = ALERT_BACKOFF,
                 background_backoff: Backoff = BACKGROUND_BACKOFF) -> None:
        self.outbox = outbox
        self.api = api
        self.clock = clock
        self.rand = rand
        self.alert_backoff = alert_backoff
        self.background_backoff = background_backoff
        self._locks: dict[str, asyncio.Lock] = {}
        self._alert_wake = asyncio.Event()
        self._background_wake = asyncio.Event()
        self.server_reachable: bool | None = None
        self.last_success_ts: float | None = None
        self.token_refused = False
        self.on_heartbeat_reply: Callable[[dict, float], None] | None = None  # (reply, when it was sent)
        self.on_alert_delivered: Callable[[str], None] | None = None
        self.on_heartbeat_delivered: Callable[[dict], None] | None = None  # the payload the server took
        self.on_alert_closed: Callable[[str], None] | None = None  # the server said 409 to its fixes
        self.on_reachable: Callable[[], None] | None = None  # the server answers again after a failure
        self.on_incident_over: Callable[[], None] | None = None  # an episode ended: the server must hear of it
        self.alerts_idle = asyncio.Event()  # no alert attempt in flight or due
        self.alerts_idle.set()
        # episodes in progress (kept in the queue across restarts): the server hears of
        # each once it is over, in a heartbeat (Station.heartbeat_payload)
        self._going_on = outbox.incidents_going_on()

    def lock(self, client_id: str) -> asyncio.Lock:
        return self._locks.setdefault(client_id, asyncio.Lock())

    def kick(self) -> None:
        self._alert_wake.set()
        self._background_wake.set()

    def seen(self, result: ApiResult) -> None:
        """Any answer (or none) from the server: reachable, token refused, last success."""
        self._seen(result)

    def _seen(self, result: ApiResult) -> None:
        reachable = result.status is not None and result.status < 500
        if reachable != self.server_reachable:
            log.info("server %s", "reachable" if reachable else f"unreachable ({result.error})")
            if not reachable:
                self._episode("server_unreachable", True)
            elif "server_unreachable" in self._going_on:
                self._episode("server_unreachable", False, OUTAGE_REPORT_S)
            if reachable and self.server_reachable is False and self.on_reachable:
                self.on_reachable()
        self.server_reachable = reachable
        if result.status is not None and result.status < 500:
            self.token_refused = result.status in TOKEN_REFUSED
        if result.ok:
            self.last_success_ts = self.clock()

    def _episode(self, kind: str, starts: bool, shorter_than_s: float = 0.0) -> None:
        if starts:
            self.outbox.incident_started(kind)
            self._going_on.add(kind)
        else:
            self.outbox.incident_ended(kind, shorter_than_s)
            self._going_on.discard(kind)
            if self.on_incident_over:
                self.on_incident_over()

    # -- alerts ---------------------------------------------------------------
    async def send_alert(self, client_id: str) -> ApiResult | None:
        """One attempt for one alert; returns None when there was nothing to do."""
        async with self.lock(client_id):
            row = self.outbox.alert(client_id)
            if row is None or row.state != "pending":
                return None
            result = await self.api.post_alert(row.payload(self.outbox.sms_sent_to(client_id)))
            self._seen(result)
            if result.ok:
                server_id = result.body.get("id") if isinstance(result.body, dict) else None
                self.outbox.alert_delivered(client_id, server_id if isinstance(server_id, int) else None)
                log.info("alert %s delivered (HTTP %s, attempt %d)", client_id, result.status, row.attempts + 1)
                if "alert_refused" in self._going_on and not self.outbox.counts()["alerts_refused"]:
                    self._episode("alert_refused", False)  # every refused alert has reached the server
                self._background_wake.set()  # its fixes can go now
                if self.on_alert_delivered:
                    self.on_alert_delivered(client_id)
            elif result.outcome is Outcome.PERMANENT:
                # Never dropped: an alert is what the person has in danger.
                if result.status not in TOKEN_REFUSED and (row.fixes or row.triggered_at):
                    log.error("alert %s refused by the server (%s): sent again without its times and fixes",
                              client_id, result.error)
                    self.outbox.alert_stripped(client_id)
                    self._alert_wake.set()
                else:
                    delay = self._delay(self.background_backoff, row.attempts, result)
                    self.outbox.alert_refused(client_id, self.clock() + delay, result.error)
                    self._going_on.add("alert_refused")
                    log.error("alert %s refused by the server (%s): kept, tried again in %.0f s and after re-pairing",
                              client_id, result.error, delay)
            else:
                delay = self._delay(self.alert_backoff, row.attempts, result)
                self.outbox.alert_retry(client_id, self.clock() + delay, result.error)
                log.warning("alert %s not delivered (%s); retry in %.1f s", client_id, result.error, delay)
            return result

    async def run_alerts(self) -> None:
        """Sends every due alert in its own task: one slow alert never holds up another."""
        inflight: dict[str, asyncio.Task[ApiResult | None]] = {}

        def done(client_id: str) -> None:
            inflight.pop(client_id, None)
            self._alert_wake.set()

        try:
            while True:
                self._alert_wake.clear()
                pending = [a for a in self.outbox.alerts("state = 'pending'") if a.client_id not in inflight]
                now = self.clock()
                for a in pending:
                    if a.next_attempt_ts <= now:
                        task = asyncio.create_task(self.send_alert(a.client_id))
                        inflight[a.client_id] = task
                        task.add_done_callback(lambda _t, cid=a.client_id: done(cid))
                later = [a.next_attempt_ts for a in pending if a.next_attempt_ts > now]
                if inflight:
                    self.alerts_idle.clear()
                else:
                    self.alerts_idle.set()
                await self._sleep(self._alert_wake, min(later) if later else None)
        finally:
            self.alerts_idle.set()
            for task in inflight.values():
                task.cancel()

    # -- fixes and heartbeats ---------------------------------------------------
    async def send_fixes(self) -> None:
        for client_id, batch in self.outbox.due_fix_batches(self.clock()).items():
            ids = [f["id"] for f in batch]
            result = await self.api.post_fixes(client_id, batch)
            self._seen(result)
            if result.ok:
                self.outbox.fixes_sent(ids)
            elif result.status == 409:
                # Closed on the server, or cancelled under duress (the server then keeps them
                # and answers alike): out of the queue quietly, the same way in both cases.
                self.outbox.fixes_dropped(client_id, ids, 409, result.error, record=False)
                row = self.outbox.alert(client_id)
                if row is not None and not row.closed:
                    log.info("alert %s is no longer open on the server", client_id)
                    self.outbox.alert_closed(client_id)
                    if self.on_alert_closed:
                        self.on_alert_closed(client_id)
            elif result.outcome is Outcome.PERMANENT and result.status not in TOKEN_REFUSED:
                log.error("fixes of alert %s refused for good: %s", client_id, result.error)
                self.outbox.fixes_dropped(client_id, ids, result.status, result.error)
            elif result.outcome is Outcome.PERMANENT:
                # The token, not the fixes: kept for after re-pairing (where she was counts).
                attempts = self.outbox.fix_attempts(ids)
                delay = self._delay(self.background_backoff, attempts, result)
                self.outbox.fixes_retry(ids, self.clock() + delay)
                log.error("fixes of alert %s refused (%s): kept, tried again in %.0f s and after re-pairing",
                          client_id, result.error, delay)
            else:
                attempts = self.outbox.fix_attempts(ids)
                self.outbox.fixes_retry(ids, self.clock() + self._delay(self.background_backoff, attempts, result))

    async def send_heartbeat(self) -> None:
        pending = self.outbox.heartbeat()
        if pending is None or pending[2] > self.clock():
            return
        payload, attempts, _ = pending
        sent_ts = self.clock()
        result = await self.api.heartbeat(payload)
        self._seen(result)
        if result.ok:
            self.outbox.heartbeat_done(payload)
            if self.on_heartbeat_delivered:
                self.on_heartbeat_delivered(payload)
            if self.on_heartbeat_reply and isinstance(result.body, dict):
                self.on_heartbeat_reply(result.body, sent_ts)
        elif result.outcome is Outcome.PERMANENT:
            log.error("heartbeat refused for good: %s", result.error)
            self.outbox.heartbeat_done(payload, result.status, result.error)
        else:
            self.outbox.heartbeat_retry(self.clock() + self._delay(self.background_backoff, attempts, result))

    async def run_background(self) -> None:
        while True:
            self._background_wake.clear()
            await self.send_fixes()
            await self.send_heartbeat()
            hb = self.outbox.heartbeat()
            nexts = [t for t in (self.outbox.next_fix_attempt(), hb[2] if hb else None) if t is not None]
            await self._sleep(self._background_wake, min(nexts) if nexts else None)

    # -- helpers -------------------------------------------------------------
    def _delay(self, backoff: Backoff, attempts: int, result: ApiResult) -> float:
        delay = backoff.delay(attempts, self.rand())
        if result.retry_after_s is not None:
            delay = max(delay, min(result.retry_after_s, backoff.cap_s))
        return delay

    async def _sleep(self, wake: asyncio.Event, until: float | None) -> None:
        await wait_event(wake, None if until is None else until - self.clock())

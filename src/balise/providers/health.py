"""Each provider's health, and a circuit breaker (docs/providers.md, "Operations").

`Guarded` wraps a provider (balise.providers.registry wraps every one it builds): it
counts what the provider did with each message (last success, error rate over the
last WINDOW), and after PROVIDER_BREAKER_FAILURES failures in a row skips it for
PROVIDER_BREAKER_SECONDS: the dispatcher then goes straight to the next provider
instead of waiting for a timeout on every message. Once that time has passed, one
message tries it again ("half-open"): a success closes the breaker, a failure opens it
for another period. A provider is never skipped while every other one is failing too
(skipping them all would send nothing). A refusal of one recipient (PermanentError) is
the provider working: it counts as a success.

The figures are this process's (the dispatcher's): /health and /metrics show them when
the dispatcher runs in the web process (`balise serve`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from balise.providers.base import OutgoingMessage, PermanentError, Provider, SendResult, UnavailableError

log = logging.getLogger(__name__)

WINDOW = 300.0  # seconds over which the error rate is counted


@dataclass
class Health:
    name: str
    attempts: deque = field(default_factory=deque)  # (monotonic time, ok)
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str = ""
    open_until: float | None = None  # monotonic; None: closed
    skipped: int = 0
    status: object = None  # the provider's own status() (an SMPP session: bound or not)

    def snapshot(self, now: float) -> dict:
        recent = [ok for at, ok in self.attempts if at >= now - WINDOW]
        extra = {}
        if self.status is not None:
            try:
                extra = dict(self.status())
            except Exception:
                extra = {}
        return {**extra,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "last_error": self.last_error,
            "attempts_5m": len(recent),
            "error_rate_5m": round(1 - sum(recent) / len(recent), 3) if recent else 0.0,
            "consecutive_failures": self.consecutive_failures,
            "circuit": "open" if self.open_until is not None and now < self.open_until
            else ("half-open" if self.open_until is not None else "closed"),
            "skipped": self.skipped,
        }


_lock = threading.Lock()
_health: dict[str, Health] = {}


def report(now: float | None = None) -> dict[str, dict]:
    """{provider name: its health} for every provider this process has built."""
    now = time.monotonic() if now is None else now
    with _lock:
        return {name: h.snapshot(now) for name, h in _health.items()}


def forget() -> None:
    """Drop every figure (tests)."""
    with _lock:
        _health.clear()


class Guarded(Provider):
    def __init__(self, inner: Provider, *, failures: int = 5, open_seconds: float = 60.0, clock=time.monotonic,
                 wall=lambda: datetime.now(dt_timezone.utc)):
        self.inner = inner
        self.name = inner.name
        self.channels = inner.channels
        self.failures, self.open_seconds = failures, open_seconds
        self.clock, self.wall = clock, wall
        with _lock:
            self.health = _health.setdefault(inner.name, Health(inner.name))
            self.health.status = getattr(inner, "status", None)
        self.probing = False  # a half-open trial is in flight

    def _admit(self) -> bool:
        with _lock:
            h = self.health
            if h.open_until is None:
                return True
            now = self.clock()
            others = any(o.open_until is None or now >= o.open_until for o in _health.values() if o is not h)
            if not others:
                return True  # every provider is failing: skipping them all would send nothing
            if now < h.open_until or self.probing:
                h.skipped += 1
                return False
            self.probing = True  # half-open: this one message tries it
            return True

    def _record(self, ok: bool, error: str = "") -> None:
        now = self.clock()
        with _lock:
            h = self.health
            h.attempts.append((now, ok))
            while h.attempts and h.attempts[0][0] < now - WINDOW:
                h.attempts.popleft()
            self.probing = False
            if ok:
                h.consecutive_failures, h.open_until = 0, None
                h.last_success = self.wall()
                return
            h.consecutive_failures += 1
            h.last_failure, h.last_error = self.wall(), error[:200]
            opens = h.consecutive_failures >= self.failures
            if opens:
                h.open_until = now + self.open_seconds
        if opens:
            log.error("provider %s failed %d times in a row: skipped for %.0f s", self.name, h.consecutive_failures,
                      self.open_seconds)

    def _admit_or_skip(self) -> None:
        if not self._admit():
            raise UnavailableError(f"{self.name} skipped: it failed repeatedly (circuit open)")

    def _record_failure(self, exc: Exception) -> None:
        # (a refusal of one recipient is the provider working)
        self._record(isinstance(exc, PermanentError), f"{type(exc).__name__}: {exc}")

    def send(self, message: OutgoingMessage) -> SendResult:
        self._admit_or_skip()
        try:
            result = self.inner.send(message)
        except Exception as exc:
            self._record_failure(exc)
            raise
        self._record(True)
        return result

    async def send_async(self, message: OutgoingMessage) -> SendResult:
        self._admit_or_skip()
        try:
            result = await self.inner.send_async(message)
        except Exception as exc:
            self._record_failure(exc)
            raise
        self._record(True)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()

    def lookup(self, message: OutgoingMessage, since: float) -> SendResult | None:
        return self.inner.lookup(message, since)

    def check(self) -> str:
        return self.inner.check()

    def close(self) -> None:
        self.inner.close()

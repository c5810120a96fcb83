"""Drive a dispatcher in-process and see what providers were asked to send."""

from __future__ import annotations

import threading
import time

from django.utils import timezone

from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.providers.base import OutgoingMessage, Provider, SendResult


class RecordingProvider(Provider):
    """Takes every message and remembers it; `fail` scripts errors to raise first."""

    def __init__(self, name: str = "recording", fail: list[Exception] | None = None):
        self.name = name
        self.sent: list[OutgoingMessage] = []
        self.fail = list(fail or [])
        self.lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> SendResult:
        with self.lock:
            if self.fail:
                raise self.fail.pop(0)
            self.sent.append(message)
        return SendResult(f"{self.name}-{len(self.sent)}")


def drain(dispatcher: Dispatcher, timeout: float = 10.0) -> None:
    """Tick until nothing is due or in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.tick()
        due = Delivery.objects.filter(state__in=["pending", "sending"], next_attempt_at__lte=timezone.now())
        if not dispatcher.in_flight and not due.exists():
            return
        time.sleep(0.01)
    raise AssertionError("dispatcher did not drain")

"""The default provider: prints what it would send and keeps it in a JSON-lines file
(BALISE_CONSOLE_OUTBOX) where the demo and the tests read it. No account needed.

Calls are simulated: each call gets an outcome (BALISE_CONSOLE_VOICE_OUTCOMES, per
number, e.g. "+33612345601=no_answer,+33612345602=answered|pressed_1": outcomes in turn,
the last one repeating; else BALISE_CONSOLE_VOICE_DEFAULT), and after
BALISE_CONSOLE_VOICE_DELAY seconds the provider reports it to Balise's inbound voice
webhook exactly as a real provider would, signed (balise.providers.callbacks: with
BALISE_INBOUND_SECRET, or the secret derived from the install's secret key when it is
not set): so every path (not answered, answered without pressing 1, pressed 1) can be
tried with no account, and Balise refuses an unsigned one.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from django.utils import timezone

from balise.providers import callbacks, links
from balise.providers.base import OutgoingMessage, Provider, SendResult

_lock = threading.Lock()
log = logging.getLogger(__name__)

OUTCOMES = ("no_answer", "answered", "pressed_1")
# What a Twilio-style provider would post for each outcome.
_CALLBACK = {
    "no_answer": {"CallStatus": "no-answer"},
    "answered": {"CallStatus": "completed"},
    "pressed_1": {"CallStatus": "completed", "Digits": "1"},
}


def parse_outcomes(spec: str) -> dict[str, list[str]]:
    """"+336...=no_answer|pressed_1,+337...=answered" -> {number: [outcomes]}."""
    script: dict[str, list[str]] = {}
    for item in filter(None, (p.strip() for p in (spec or "").split(","))):
        number, _, outcomes = item.partition("=")
        steps = [o.strip() for o in outcomes.split("|") if o.strip()]
        if not number.strip() or not steps or any(o not in OUTCOMES for o in steps):
            raise ValueError(f"BALISE_CONSOLE_VOICE_OUTCOMES: expected number=outcome|outcome with outcomes in {OUTCOMES}")
        script[number.strip()] = steps
    return script


class CallSimulator:
    """Decides each simulated call's outcome and reports it to the inbound webhook."""

    def __init__(self, script: dict[str, list[str]], default: str, delay: float, site_url: str):
        if default not in OUTCOMES and default != "off":
            raise ValueError(f"BALISE_CONSOLE_VOICE_DEFAULT must be one of {OUTCOMES} or off")
        self.script = script
        self.default = default
        self.delay = delay
        self.site_url = site_url
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "CallSimulator":
        from django.conf import settings

        return cls(parse_outcomes(settings.CONSOLE_VOICE_OUTCOMES), settings.CONSOLE_VOICE_DEFAULT,
                   settings.CONSOLE_VOICE_DELAY, settings.SITE_URL)

    def outcome(self, number: str) -> str | None:
        """The outcome of the next call to NUMBER; None: not simulated ("off")."""
        steps = self.script.get(number)
        if not steps:
            return None if self.default == "off" else self.default
        with self.lock:
            n = self.calls.get(number, 0)
            self.calls[number] = n + 1
        return steps[min(n, len(steps) - 1)]

    def report_later(self, key: str, outcome: str) -> None:
        timer = threading.Timer(self.delay, self.report, (key, outcome))
        timer.daemon = True
        timer.start()

    def report(self, key: str, outcome: str) -> None:
        url = links.call_url(key, self.site_url)
        body = urlencode(_CALLBACK[outcome]).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **callbacks.sign("POST", urlsplit(url).path, body)}
        # Retried as a provider does when it could not deliver (same request: one that did
        # arrive is refused as a replay, never acted on twice).
        for _attempt in range(3):
            try:
                httpx.post(url, content=body, headers=headers, timeout=10).raise_for_status()
                return
            except httpx.HTTPError as exc:
                error = exc
                if not isinstance(exc, httpx.TransportError):
                    break
        log.warning("console provider: could not report a simulated call outcome (%s)", type(error).__name__)


class ConsoleProvider(Provider):
    name = "console"

    def __init__(self, outbox: str, stream=None, calls: CallSimulator | None = None):
        self.outbox = Path(outbox)
        self.stream = stream or sys.stdout
        self.calls = calls if calls is not None else CallSimulator.from_settings()

    def send(self, message: OutgoingMessage) -> SendResult:
        ref = f"console-{uuid.uuid4().hex[:12]}"
        record = {
            "at": timezone.now().isoformat(),
            "ref": ref,
            "key": message.key,
            "channel": message.channel,
            "to": message.to,
            "language": message.language,
            "alert_id": message.alert_id,
            "alert_kind": message.alert_kind,
            "purpose": message.purpose,
            "text": message.text,
        }
        label = "SMS" if message.channel == "sms" else "APPEL"
        outcome = None
        if message.channel == "voice":
            outcome = self.calls.outcome(message.to)
            if outcome is not None:
                record["outcome"] = outcome
                label = f"APPEL ({outcome})"
        with _lock:
            self.outbox.parent.mkdir(parents=True, exist_ok=True)
            with self.outbox.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            print(f"[{label} -> {message.to}] {message.text}", file=self.stream, flush=True)
        if outcome is not None:
            self.calls.report_later(message.key, outcome)
        return SendResult(ref)


def read_outbox(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""Twilio: SMS through the Messages API, calls through the Calls API, with the official
`twilio` SDK (docs/providers.md).

- An SMS carries a StatusCallback (/inbound/status/<token>): Twilio reports queued, sent,
  delivered, undelivered or failed, with the carrier's error code, and Balise writes it
  on the delivery and the alert's timeline (balise.inbound.actions.carrier_status).
- A call fetches its TwiML from /inbound/voice/<token>/twiml (her recording or the
  words in her contact's language, "press 1, 2 or 3", twice) with answering-machine
  detection (MachineDetection=Enable): a voicemail hangs up and counts as unreached,
  like no answer or busy; only a person answering counts as reached. Status and keys
  come back to /inbound/voice/<token>, signed by Twilio (X-Twilio-Signature).
- Calls are paced to BALISE_TWILIO_CALLS_PER_SECOND (Twilio's default is one call per
  second per account; Twilio raises it on request, then raise this setting).
- After a timeout that may have left the message at Twilio, `lookup` lists the recent
  messages (or calls) to the same number from the same number and matches the one sent:
  only when it is not there does the dispatcher try the next provider.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from requests import exceptions as rq
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from balise.providers import links
from balise.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendResult,
    UnavailableError,
)

log = logging.getLogger(__name__)
# The SDK logs each request's query (phone numbers) at INFO: only its warnings, here.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

# Seconds a call rings before Twilio gives up (no-answer).
RING_SECONDS = 30
# How far Twilio's clock may be from ours when matching a message after a timeout.
LOOKUP_SKEW = timedelta(seconds=60)


class Pacer:
    """At most RATE starts per second, across threads: each caller gets the next free
    slot and waits for it. CLOCK and SLEEP are injectable for tests."""

    def __init__(self, rate: float, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_slot = float("-inf")
        self.lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller may start; returns the seconds waited."""
        with self.lock:
            now = self.clock()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            self.sleep(slot - now)
        return slot - now


def _refused_connection(exc: BaseException) -> bool:
    """Whether the request never left (no connection made): safe to send elsewhere."""
    if isinstance(exc, rq.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, rq.ConnectionError) and ("NewConnectionError" in text or "NameResolutionError" in text)


def translate(exc: Exception, what: str) -> ProviderError:
    """A failure of the SDK as the dispatcher's typed errors (never the phone number)."""
    if isinstance(exc, TwilioRestException):
        status, code = exc.status, exc.code
        if status == 429:
            return RateLimitedError(f"twilio rate-limited (error {code})")
        if status in (401, 403):
            return UnavailableError(f"twilio refused the credentials (HTTP {status}, error {code})")
        if 400 <= status < 500:
            return PermanentError(f"twilio refused the {what} (HTTP {status}, error {code})")
        if status == 503:
            return UnavailableError(f"twilio unavailable (HTTP {status})")
        return AmbiguousError(f"twilio answered HTTP {status} (error {code})")
    if _refused_connection(exc):
        return UnavailableError(f"twilio unreachable: {type(exc).__name__}")
    if isinstance(exc, rq.RequestException):
        return AmbiguousError(f"twilio did not answer: {type(exc).__name__}")
    return UnavailableError(f"twilio client error: {type(exc).__name__}")


class TwilioProvider(Provider):
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, from_number: str, *, api_url: str = "",
                 timeout: float = 5.0, calls_per_second: float = 1.0, site_url: str = "",
                 pacer: Pacer | None = None, name: str = "twilio"):
        if not (account_sid and auth_token and from_number):
            raise ValueError("the twilio provider needs BALISE_TWILIO_ACCOUNT_SID, BALISE_TWILIO_AUTH_TOKEN "
                             "and BALISE_TWILIO_FROM")
        self.name = name
        self.account_sid = account_sid
        self.from_number = from_number
        self.site_url = site_url
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_url:
            # The SDK builds every URL from its API domain's base_url (https://api.twilio.com).
            self.client.api.base_url = api_url.rstrip("/")
        self.pacer = pacer or Pacer(calls_per_second)

    # -- URLs Twilio calls back -----------------------------------------------------

    def _call_url(self, key: str) -> str:
        return links.call_url(key, self.site_url)

    def _status_url(self, key: str) -> str:
        return links.status_url(key, self.site_url)

    # -- sending --------------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            if message.channel == "sms":
                sent = self.client.messages.create(to=message.to, from_=self.from_number, body=message.text,
                                                   status_callback=self._status_url(message.key))
            else:
                self.pacer.wait()
                callback = self._call_url(message.key)
                sent = self.client.calls.create(
                    to=message.to, from_=self.from_number, url=f"{callback}/twiml", method="POST",
                    status_callback=callback, status_callback_method="POST",
                    status_callback_event=["ringing", "completed"],
                    machine_detection="Enable", timeout=RING_SECONDS,
                )
        except Exception as exc:
            raise translate(exc, "message" if message.channel == "sms" else "call") from exc
        return SendResult(sent.sid or "")

    def lookup(self, message: OutgoingMessage, since: float) -> SendResult | None:
        """The message (same destination, same text) or call (same destination) Twilio
        created from our number since SINCE, if any."""
        after = datetime.fromtimestamp(since, dt_timezone.utc) - LOOKUP_SKEW
        try:
            if message.channel == "sms":
                recent = self.client.messages.list(to=message.to, from_=self.from_number, limit=50)
                found = [m for m in recent if m.body == message.text and m.date_created and m.date_created >= after]
            else:
                recent = self.client.calls.list(to=message.to, from_=self.from_number, limit=50)
                found = [c for c in recent if c.date_created and c.date_created >= after]
        except Exception as exc:
            raise translate(exc, "lookup") from exc
        return SendResult(found[0].sid) if found else None

    def check(self) -> str:
        """Fetch the account: the credentials work and Twilio answers; nothing is sent."""
        try:
            account = self.client.api.v2010.accounts(self.account_sid).fetch()
        except Exception as exc:
            raise translate(exc, "credentials") from exc
        if account.status != "active":
            raise UnavailableError(f"the twilio account is {account.status}")
        return f"account {account.status}"

    def close(self) -> None:
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            session.close()

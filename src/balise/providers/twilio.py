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
- The dispatcher sends on its event loop with the SDK's asynchronous client (aiohttp,
  `send_async`); `send`, `lookup` and `check` use its blocking one. The asynchronous
  client applies no time limit of its own: each request is bounded here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import aiohttp
from requests import exceptions as rq
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
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
logging.getLogger("twilio.async_http_client").setLevel(logging.WARNING)

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

    def reserve(self) -> float:
        """Take the next free slot; the seconds until it comes."""
        with self.lock:
            now = self.clock()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        return slot - now

    def wait(self) -> float:
        """Block until this caller may start; returns the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self.sleep(delay)
        return delay


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
    if _refused_connection(exc) or isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return UnavailableError(f"twilio unreachable: {type(exc).__name__}")
    if isinstance(exc, (rq.RequestException, aiohttp.ClientError, asyncio.TimeoutError)):
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
        self.auth_token, self.api_url, self.timeout = auth_token, api_url, timeout
        self.client = self._client(TwilioHttpClient(timeout=timeout))
        self.pacer = pacer or Pacer(calls_per_second)
        # The SDK's asynchronous client, one per event loop that sends (its session is the loop's).
        self.async_clients: dict[asyncio.AbstractEventLoop, Client] = {}

    def _client(self, http_client) -> Client:
        client = Client(self.account_sid, self.auth_token, http_client=http_client)
        if self.api_url:
            # The SDK builds every URL from its API domain's base_url (https://api.twilio.com).
            client.api.base_url = self.api_url.rstrip("/")
        return client

    def _async_client(self) -> Client:
        loop = asyncio.get_running_loop()
        client = self.async_clients.get(loop)
        if client is None:
            client = self.async_clients[loop] = self._client(AsyncTwilioHttpClient(timeout=self.timeout))
        return client

    # -- URLs Twilio calls back -----------------------------------------------------

    def _call_url(self, key: str) -> str:
        return links.call_url(key, self.site_url)

    def _status_url(self, key: str) -> str:
        return links.status_url(key, self.site_url)

    # -- sending --------------------------------------------------------------------

    def _create(self, message: OutgoingMessage) -> dict:
        """The parameters of the message (or call) that MESSAGE is at Twilio."""
        if message.channel == "sms":
            return {"to": message.to, "from_": self.from_number, "body": message.text,
                    "status_callback": self._status_url(message.key)}
        callback = self._call_url(message.key)
        return {"to": message.to, "from_": self.from_number, "url": f"{callback}/twiml", "method": "POST",
                "status_callback": callback, "status_callback_method": "POST",
                "status_callback_event": ["ringing", "completed"],
                "machine_detection": "Enable", "timeout": RING_SECONDS}

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            if message.channel == "sms":
                sent = self.client.messages.create(**self._create(message))
            else:
                self.pacer.wait()
                sent = self.client.calls.create(**self._create(message))
        except Exception as exc:
            raise translate(exc, "message" if message.channel == "sms" else "call") from exc
        return SendResult(sent.sid or "")

    async def send_async(self, message: OutgoingMessage) -> SendResult:
        client = self._async_client()
        try:
            if message.channel == "sms":
                create = client.messages.create_async(**self._create(message))
            else:
                await asyncio.sleep(self.pacer.reserve())
                create = client.calls.create_async(**self._create(message))
            sent = await asyncio.wait_for(create, self.timeout)
        except Exception as exc:
            raise translate(exc, "message" if message.channel == "sms" else "call") from exc
        return SendResult(sent.sid or "")

    async def aclose(self) -> None:
        client = self.async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.http_client.close()

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

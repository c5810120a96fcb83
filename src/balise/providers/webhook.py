"""Generic webhook provider: POSTs each message as JSON to BALISE_WEBHOOK_URL.

The delivery id travels as the Idempotency-Key header so that the receiving side can
drop a re-send after a crash. With BALISE_WEBHOOK_SECRET set, the body is signed
(X-Balise-Signature: hex HMAC-SHA256 of the body).

The dispatcher sends on its event loop with aiohttp (`send_async`: many requests at once
on one thread; a sixth of the CPU of httpx on threads, issue 16); `send`, for a caller
with no loop, runs the same on a loop of its own.

A call carries its `callback_url`: the gateway reports the call's status and keypad
presses there (form CallStatus/Digits or JSON {"status", "digits"}), and SMS replies to
/inbound/sms, each signed with BALISE_INBOUND_SECRET (README, "Inbound callbacks").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import aiohttp

from balise.providers import links
from balise.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    Provider,
    RateLimitedError,
    SendResult,
    UnavailableError,
)


class WebhookProvider(Provider):
    name = "webhook"

    def __init__(self, url: str, timeout: float, secret: str = "", name: str = "webhook"):
        if not url:
            raise ValueError("the webhook provider needs BALISE_WEBHOOK_URL")
        self.url = url
        self.secret = secret.encode()
        self.name = name
        self.timeout = timeout
        # One aiohttp session per event loop that sends (a session belongs to its loop).
        self.sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _request(self, message: OutgoingMessage) -> tuple[bytes, dict[str, str]]:
        payload = {
            "id": message.key,
            "channel": message.channel,
            "to": message.to,
            "text": message.text,
            "language": message.language,
            "alert_id": message.alert_id,
            "alert_kind": message.alert_kind,
            "purpose": message.purpose,
        }
        if message.channel == "voice":
            payload["callback_url"] = links.call_url(message.key)
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.key}
        if self.secret:
            headers["X-Balise-Signature"] = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return body, headers

    @staticmethod
    def _verdict(status: int, headers, content: bytes) -> SendResult:
        """What the gateway's answer means: the SendResult of a message taken, else the
        typed error that tells the dispatcher what to do next."""
        if 200 <= status < 300:
            ref = ""
            try:
                ref = str(json.loads(content).get("id", ""))[:200]
            except (ValueError, AttributeError):
                pass
            return SendResult(ref or headers.get("X-Request-Id", ""))
        if status == 429:
            retry_after = headers.get("Retry-After")
            raise RateLimitedError("webhook rate-limited", float(retry_after) if retry_after and retry_after.isdigit() else None)
        if status in (400, 404, 410, 422):
            raise PermanentError(f"webhook refused the message: HTTP {status}")
        raise UnavailableError(f"webhook answered HTTP {status}")

    def send(self, message: OutgoingMessage) -> SendResult:
        async def once() -> SendResult:
            try:
                return await self.send_async(message)
            finally:
                await self.aclose()

        return asyncio.run(once())

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self.sessions.get(loop)
        if session is None or session.closed:
            session = self.sessions[loop] = aiohttp.ClientSession(
                # connect: a connection made, or a free one from the pool, within this time
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, 2.0)),
                connector=aiohttp.TCPConnector(limit=64),
                trust_env=True,  # (HTTPS_PROXY and the like, as httpx reads them)
            )
        return session

    async def send_async(self, message: OutgoingMessage) -> SendResult:
        body, headers = self._request(message)
        try:
            async with self._session().post(self.url, data=body, headers=headers) as response:
                content = await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise UnavailableError(f"webhook unreachable: {type(exc).__name__}") from exc
        except asyncio.TimeoutError as exc:  # (aiohttp's read and total time-outs are ones)
            raise AmbiguousError(f"webhook timed out after sending: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise AmbiguousError(f"webhook transport error: {type(exc).__name__}") from exc
        return self._verdict(response.status, response.headers, content)

    async def aclose(self) -> None:
        session = self.sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

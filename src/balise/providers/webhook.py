"""Generic webhook provider: POSTs each message as JSON to BALISE_WEBHOOK_URL.

The delivery id travels as the Idempotency-Key header so that the receiving side can
drop a re-send after a crash. With BALISE_WEBHOOK_SECRET set, the body is signed
(X-Balise-Signature: hex HMAC-SHA256 of the body).

A call carries its `callback_url`: the gateway reports the call's status and keypad
presses there (form CallStatus/Digits or JSON {"status", "digits"}), and SMS replies to
/inbound/sms, each signed with BALISE_INBOUND_SECRET (README, "Inbound callbacks").
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

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
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def send(self, message: OutgoingMessage) -> SendResult:
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
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UnavailableError(f"webhook unreachable: {type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            raise AmbiguousError(f"webhook timed out after sending: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise AmbiguousError(f"webhook transport error: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            ref = ""
            try:
                ref = str(response.json().get("id", ""))[:200]
            except (ValueError, AttributeError):
                pass
            return SendResult(ref or response.headers.get("X-Request-Id", ""))
        if status == 429:
            retry_after = response.headers.get("Retry-After")
            raise RateLimitedError("webhook rate-limited", float(retry_after) if retry_after and retry_after.isdigit() else None)
        if status in (400, 404, 410, 422):
            raise PermanentError(f"webhook refused the message: HTTP {status}")
        raise UnavailableError(f"webhook answered HTTP {status}")

    def close(self) -> None:
        self.client.close()

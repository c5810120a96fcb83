"""The one interface every SMS and voice provider implements, and its typed errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class ProviderError(Exception):
    """Base of provider failures; the subclass decides what the dispatcher does next."""


class PermanentError(ProviderError):
    """The recipient cannot be reached this way (invalid number, refused): do not retry."""


class UnavailableError(ProviderError):
    """The provider did not take the message (down, 5xx, refused connection): fail over."""


class RateLimitedError(ProviderError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class AmbiguousError(ProviderError):
    """The request may have been taken (timeout after sending): retry with the same key."""


@dataclass(frozen=True)
class OutgoingMessage:
    key: str  # the delivery id: idempotency key for the provider
    channel: str  # "sms" or "voice"
    to: str  # E.164
    text: str
    language: str
    alert_id: int
    alert_kind: str
    purpose: str
    avoid: tuple[str, ...] = ()  # providers not to use (a carrier reported them failing this message)


@dataclass(frozen=True)
class SendResult:
    provider_ref: str = ""


class Provider:
    name = "base"
    channels: tuple[str, ...] = ("sms", "voice")

    def send(self, message: OutgoingMessage) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    async def send_async(self, message: OutgoingMessage) -> SendResult:
        """`send` for the dispatcher's event loop (balise.dispatch.sendloop). A provider
        with an asynchronous client overrides it; by default the blocking `send` runs on
        one of the loop's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(None, self.send, message)

    async def aclose(self) -> None:
        """Close what `send_async` opened on the running loop (called on that loop)."""

    def lookup(self, message: OutgoingMessage, since: float) -> SendResult | None:
        """After an AmbiguousError on MESSAGE (first tried at Unix time SINCE): did this
        provider take it? A SendResult: yes, do not send it elsewhere; None: no, it is
        safe to fail over. Raises ProviderError when it cannot tell (the default: the
        provider's API offers no way to ask)."""
        raise UnavailableError(f"{self.name} cannot be asked about a message")

    def check(self) -> str:
        """Validate the credentials and reach the provider without sending anything;
        a few words on success, ProviderError otherwise."""
        return "nothing to check"

    def close(self) -> None:
        pass

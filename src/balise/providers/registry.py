"""Builds the ordered provider list from settings, each wrapped in its health record
and circuit breaker (balise.providers.health). Tests patch `build_providers`: the
one seam between Balise and the outside world."""

from __future__ import annotations

from django.conf import settings

from balise.providers.base import Provider
from balise.providers.health import Guarded


def build_providers(*, start_sessions: bool = True) -> list[Provider]:
    """START_SESSIONS: False for a provider built only to be checked (`balise providers
    check`): an SMPP provider then opens no long-lived session."""
    providers: list[Provider] = []
    for name in settings.PROVIDERS:
        if name == "console":
            from balise.providers.console import ConsoleProvider

            providers.append(ConsoleProvider(settings.CONSOLE_OUTBOX))
        elif name.startswith("webhook"):
            # "webhook" reads BALISE_WEBHOOK_URL; "webhook2" reads BALISE_WEBHOOK2_URL, etc.
            from balise.providers.webhook import WebhookProvider
            from balise.settings import env

            suffix = name[len("webhook"):].upper()
            url = env(f"BALISE_WEBHOOK{suffix}_URL") if suffix else settings.WEBHOOK_URL
            secret = env(f"BALISE_WEBHOOK{suffix}_SECRET") if suffix else settings.WEBHOOK_SECRET
            providers.append(WebhookProvider(url, settings.PROVIDER_TIMEOUT, secret, name=name))
        elif name == "twilio":
            from balise.providers.twilio import TwilioProvider

            providers.append(TwilioProvider(
                settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM,
                api_url=settings.TWILIO_API_URL, timeout=settings.PROVIDER_TIMEOUT,
                calls_per_second=settings.TWILIO_CALLS_PER_SECOND,
            ))
        elif name == "smpp":
            from balise.providers import events
            from balise.providers.smpp import SmppProvider

            providers.append(SmppProvider(
                settings.SMPP_HOST, settings.SMPP_PORT, settings.SMPP_SYSTEM_ID, settings.SMPP_PASSWORD,
                source_addr=settings.SMPP_SOURCE_ADDR, system_type=settings.SMPP_SYSTEM_TYPE,
                window=settings.SMPP_WINDOW, timeout=settings.PROVIDER_TIMEOUT,
                enquire_link_seconds=settings.SMPP_ENQUIRE_LINK_SECONDS,
                on_receipt=events.receipt, on_incoming=events.incoming, start=start_sessions,
            ))
        else:
            raise ValueError(f"unknown provider {name!r} in BALISE_PROVIDERS")
    if not providers:
        raise ValueError("BALISE_PROVIDERS names no provider")
    return [Guarded(p, failures=settings.PROVIDER_BREAKER_FAILURES, open_seconds=settings.PROVIDER_BREAKER_SECONDS)
            for p in providers]

"""Failing over without blind double sends (docs/providers.md, "Failover").

A provider that times out after sending (AmbiguousError) may have taken the message.
Before the dispatcher hands it to the next provider, it asks the first one: found, the
message counts as sent there and goes nowhere else; not found, the next provider is
tried. When the first provider cannot say (its API has no lookup, or the lookup fails
too), the next one is tried all the same: for an alert, a message twice is better
than a message late.
"""

from __future__ import annotations

import logging

from balise.providers.base import OutgoingMessage, Provider, ProviderError, SendResult

log = logging.getLogger(__name__)


def was_taken(provider: Provider, message: OutgoingMessage, since: float) -> SendResult | None:
    """What PROVIDER says of MESSAGE after an ambiguous failure first tried at SINCE
    (Unix time): its SendResult when it took it, None when it did not or cannot say."""
    try:
        found = provider.lookup(message, since)
    except ProviderError as exc:
        log.warning("%s timed out and cannot say whether it took %s (%s): trying the next provider",
                    provider.name, message.key, exc)
        return None
    except Exception:
        log.exception("%s: looking up %s failed", provider.name, message.key)
        return None
    if found is not None:
        log.info("%s had taken %s before timing out: not sent elsewhere", provider.name, message.key)
    return found

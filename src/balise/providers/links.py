"""The URLs a provider hands over for its callbacks, made by the apps that serve them
(set in their AppConfig.ready(): balise.voice for calls, balise.inbound for SMS
delivery reports); providers import nothing from those apps."""

from __future__ import annotations

from collections.abc import Callable

# (delivery id, site URL or "") -> URL
call_url_maker: Callable[[object, str], str] | None = None
status_url_maker: Callable[[object, str], str] | None = None


def call_url(key, site_url: str = "") -> str:
    """Where a provider reports a call's status and keypad presses (and the base of its script URLs)."""
    if call_url_maker is None:
        raise RuntimeError("no call URL maker registered: balise.voice is not installed")
    return call_url_maker(key, site_url)


def status_url(key, site_url: str = "") -> str:
    """Where a provider reports the carrier's status of an SMS."""
    if status_url_maker is None:
        raise RuntimeError("no status URL maker registered: balise.inbound is not installed")
    return status_url_maker(key, site_url)

"""Short links for SMS: /s/<token>, the address of one contact's live page of one alert.

The token is random (secrets): LENGTH characters from an alphabet without look-alikes
(no 0/O/o, 1/I/l), about 58 bits. It cannot be guessed, says nothing of the alert or
the contact, and the page is served at that very address (balise.tracking.views): what
the contact keeps in her address bar is the link of her SMS, no internal id, no signed
blob. The database keeps only the token's SHA-256 (hash_token, as for device tokens),
with the alert and contact it opens and when it stops working: TRACKING_LINK_MAX_AGE
after it was made; the page also closes TRACKING_LINK_TTL_AFTER_CLOSE after the alert
is closed (present.link_expired).

Since only the hash is kept, a token cannot be found again: each message that carries
the link gets one of its own (all open the same page). They are made in one statement
for a batch of messages (mint): in the alert's own transaction for the messages handed
to this process's dispatcher (balise.dispatch.outbox), else by the dispatcher that
renders them. Links sent before random tokens (nine letters or digits derived from the
alert) were stored the same way, and keep working until they expire.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from balise.devices.models import hash_token
from balise.tracking.models import ShortLink
from balise.tracking.tokens import LinkScope

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz"
LENGTH = 10
# (8 to 10: the nine-character links of earlier releases are read too)
_SHAPE = re.compile(r"[0-9A-Za-z]{8,10}")


def link_length() -> int:
    """The length of every short link (what an SMS must leave room for)."""
    return len(f"{settings.SITE_URL}/s/") + LENGTH


def _url(token: str) -> str:
    return f"{settings.SITE_URL}/s/{token}"


def mint(pairs, now: datetime | None = None) -> list[str]:
    """New short links for PAIRS ((alert id, contact id or None: the association's line),
    ...), stored (hashed) in one statement; their URLs, in the same order. A token that
    happened to exist already fails the statement like any database error (it is never
    merged with another alert's link)."""
    expires = (now or timezone.now()) + timedelta(seconds=settings.TRACKING_LINK_MAX_AGE)
    tokens = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in pairs]
    ShortLink.objects.bulk_create([
        ShortLink(token_hash=hash_token(token), alert_id=alert_id, contact_id=contact_id, expires_at=expires)
        for token, (alert_id, contact_id) in zip(tokens, pairs)])
    return [_url(token) for token in tokens]


def short_url(alert, contact_id: int | None) -> str:
    """A new link to ALERT's page for CONTACT_ID (None: the association's line): the one
    function that makes a contact's link to her live page."""
    return mint([(alert.pk, contact_id)])[0]


def read_short_token(token: str, now: datetime | None = None) -> LinkScope | None:
    """The page a short link opens, or None for an unknown or expired one (alike)."""
    if not _SHAPE.fullmatch(token or ""):
        return None
    link = (ShortLink.objects.filter(token_hash=hash_token(token), expires_at__gt=now or timezone.now())
            .values_list("alert_id", "contact_id").first())
    return LinkScope(*link) if link else None

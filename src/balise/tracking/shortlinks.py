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

Guessing is slowed down per source (open_link, balise.throttle), never for everyone at
once: that would let anyone shut the contacts out of their pages during an alert.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from balise.alerts.models import Alert
from balise.devices.models import hash_token
from balise.people.models import Contact
from balise.throttle import count_failure, too_many
from balise.tracking.models import LinkFailure, ShortLink
from balise.tracking.present import link_expired
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


def page_of(scope: LinkScope, now: datetime | None = None):
    """(alert, contact or None) of a link's scope, None when it no longer opens anything:
    the alert closed too long ago (present.link_expired), a contact not hers."""
    alert = Alert.objects.select_related("person", "association").filter(pk=scope.alert_id).first()
    if alert is None or link_expired(alert, now or timezone.now()):
        return None
    contact = None
    if scope.contact_id is not None:
        contact = Contact.objects.filter(pk=scope.contact_id, person_id=alert.person_id).first()
        if contact is None:
            return None
    return alert, contact


class TooManyAttempts(Exception):
    """This source opened too many unknown or expired links lately (see open_link)."""


FAILURE_WINDOW = timedelta(minutes=15)


def open_link(token: str, source: str, now: datetime | None = None):
    """(alert, contact or None) that the short link TOKEN opens, None for an unknown or
    expired one, which counts against SOURCE (balise.throttle.source_key): past
    TRACKING_LINK_MAX_FAILURES within FAILURE_WINDOW, TooManyAttempts whatever the token."""
    now = now or timezone.now()
    if too_many(LinkFailure, source, now, FAILURE_WINDOW, settings.TRACKING_LINK_MAX_FAILURES):
        raise TooManyAttempts
    scope = read_short_token(token, now)
    found = page_of(scope, now) if scope is not None else None
    if found is None:
        count_failure(LinkFailure, source, now)
    return found

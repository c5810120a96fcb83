"""Short links for SMS: /s/<token>, nine characters (letters and digits) that stand for
one contact's live page of one alert.

The token is derived from the alert and the contact with the server's secret key
(HMAC-SHA256, 62^9 ≈ 1.3e16 possible tokens): it cannot be guessed, shows no internal
id, and is the same every time a message of that alert is written to that contact, so
a message re-sent after a failure reads the same. The database keeps only its SHA-256,
with the alert and contact it opens and when it stops working (as long as a signed
link made at the same time would: TRACKING_LINK_MAX_AGE; the page itself also closes
TRACKING_LINK_TTL_AFTER_CLOSE after the alert is closed). Opening it redirects to the
page's signed link (balise.tracking.tokens), which the page's scripts use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
import threading
from collections import OrderedDict
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from balise.tracking.models import ShortLink
from balise.tracking.tokens import LinkScope

ALPHABET = string.digits + string.ascii_letters
LENGTH = 9
_SHAPE = re.compile(rf"[0-9A-Za-z]{{{LENGTH}}}")
_DERIVATION = b"balise.tracking.shortlink.v1"


def _token(alert_id: int, contact_id: int | None) -> str:
    key = hmac.new(settings.SECRET_KEY.encode(), _DERIVATION, hashlib.sha256).digest()
    n = int.from_bytes(hmac.new(key, f"{alert_id}:{contact_id or 0}".encode(), hashlib.sha256).digest(), "big")
    chars = []
    for _ in range(LENGTH):
        n, digit = divmod(n, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Hashes this process stored or found stored (bounded): the messages of an alert ask for
# the same links again and again (a re-send, an escalation, a notice), and the dispatcher
# stores a batch's links in one statement (prepare) before it renders them.
_KNOWN_MAX = 20000
_known: OrderedDict[str, None] = OrderedDict()
_known_lock = threading.Lock()


def _remember(digests) -> None:
    with _known_lock:
        for digest in digests:
            _known[digest] = None
            _known.move_to_end(digest)
        while len(_known) > _KNOWN_MAX:
            _known.popitem(last=False)


def prepare(pairs) -> None:
    """Store the links of PAIRS ((alert id, contact id or None), ...) in one statement,
    those already there left as they are (the dispatcher, before rendering a batch)."""
    expires = timezone.now() + timedelta(seconds=settings.TRACKING_LINK_MAX_AGE)
    links = {}
    for alert_id, contact_id in pairs:
        digest = _digest(_token(alert_id, contact_id))
        if digest not in _known:
            links[digest] = ShortLink(token_hash=digest, alert_id=alert_id, contact_id=contact_id, expires_at=expires)
    if links:
        ShortLink.objects.bulk_create(links.values(), ignore_conflicts=True)
        digests = list(links)
        transaction.on_commit(lambda: _remember(digests))  # (at once outside a transaction)


def link_length() -> int:
    """The length of every short link (what an SMS must leave room for)."""
    return len(f"{settings.SITE_URL}/s/") + LENGTH


def short_token(alert, contact_id: int | None) -> str:
    """The short token of ALERT's page for CONTACT_ID (None: the association's line),
    stored (hashed) the first time it is asked for."""
    token = _token(alert.pk, contact_id)
    digest = _digest(token)
    if digest in _known:
        return token
    expires = timezone.now() + timedelta(seconds=settings.TRACKING_LINK_MAX_AGE)
    try:
        ShortLink.objects.get_or_create(token_hash=_digest(token),
                                        defaults={"alert_id": alert.pk, "contact_id": contact_id, "expires_at": expires})
    except IntegrityError:  # written at the same instant by another thread: it is there
        pass
    else:
        if not connection.in_atomic_block:  # (a transaction may yet roll it back)
            _remember([digest])
    return token


def short_url(alert, contact_id: int | None) -> str:
    return f"{settings.SITE_URL}/s/{short_token(alert, contact_id)}"


def read_short_token(token: str, now=None) -> tuple[LinkScope, bool] | None:
    """(the page it opens, expired) for a known token, None for any other string."""
    if not _SHAPE.fullmatch(token or ""):
        return None
    link = ShortLink.objects.filter(token_hash=_digest(token)).values_list("alert_id", "contact_id", "expires_at").first()
    if link is None:
        return None
    alert_id, contact_id, expires_at = link
    return LinkScope(alert_id, contact_id), expires_at <= (now or timezone.now())

"""Signed links: the consent page's (/c/<token>, scoped to one contact) and the calls'
provider callbacks. The contact's live page is opened by a random short link instead
(balise.tracking.shortlinks).

A token here is an HMAC-signed, timestamped payload (django.core.signing): it cannot be
guessed or altered without the server's secret key, and it stops working after a
while.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.core import signing


@dataclass(frozen=True)
class LinkScope:
    """The page a link opens: one alert, for one contact (None: the association's line)."""

    alert_id: int
    contact_id: int | None


# -- the live page's address before short links served it: /a/<token> ------------------

SALT = "balise.tracking.link"


def read_token(token: str) -> LinkScope | None:
    """The scope of an /a/ link of an earlier release (a signed [alert id, contact id],
    valid TRACKING_LINK_MAX_AGE), or None for an expired, altered or foreign one."""
    try:
        alert_id, contact_id = signing.loads(token, salt=SALT, max_age=settings.TRACKING_LINK_MAX_AGE)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(alert_id, int) or not isinstance(contact_id, int):
        return None
    return LinkScope(alert_id, contact_id or None)


# -- the consent page: /c/<token>, scoped to one contact -------------------------------

CONSENT_SALT = "balise.tracking.consent"


def _phone_tag(phone: str) -> str:
    """Ties a consent link to the number it was sent to: if staff give the contact's slot
    a new number, links sent to the old one stop working."""
    return hashlib.sha256(phone.encode()).hexdigest()[:10]


def make_consent_token(contact) -> str:
    return signing.dumps([contact.pk, _phone_tag(contact.phone)], salt=CONSENT_SALT, compress=True)


def read_consent_token(token: str):
    """The contact a consent link was made for, or None."""
    from balise.people.models import Contact

    try:
        contact_id, tag = signing.loads(token, salt=CONSENT_SALT, max_age=settings.CONSENT_LINK_MAX_AGE)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(contact_id, int) or not isinstance(tag, str):
        return None
    contact = Contact.objects.select_related("person__association").filter(pk=contact_id).first()
    if contact is None or not hmac.compare_digest(_phone_tag(contact.phone), tag):
        return None
    return contact


def consent_url(contact) -> str:
    return f"{settings.SITE_URL}/c/{make_consent_token(contact)}"


# -- provider callbacks about one call: /inbound/voice/<token> --------------------------

CALL_SALT = "balise.inbound.call"


def make_call_token(delivery_id) -> str:
    return signing.dumps(str(delivery_id), salt=CALL_SALT)


def read_call_token(token: str) -> str | None:
    try:
        value = signing.loads(token, salt=CALL_SALT, max_age=settings.TRACKING_LINK_MAX_AGE)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return value if isinstance(value, str) else None

"""Is this callback really from our provider? Balise's HMAC (X-Balise-Timestamp and
X-Balise-Signature, see balise.providers.callbacks) or Twilio's request signature
(X-Twilio-Signature, checked by the twilio SDK's RequestValidator with
BALISE_TWILIO_AUTH_TOKEN). A signature is accepted once: `claim` records it in the
transaction that acts on the callback, so a replay is refused and a callback that failed
half-way can be sent again."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm

from balise.inbound.models import SeenSignature
from balise.providers import callbacks


def _balise_signature(request, now: float) -> str:
    given = request.headers.get(callbacks.SIGNATURE_HEADER, "")
    stamp = request.headers.get(callbacks.TIMESTAMP_HEADER, "")
    if not given or not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return ""
    if abs(now - int(stamp)) > settings.INBOUND_MAX_SKEW:
        return ""
    expected = callbacks.signature(callbacks.inbound_secret(), stamp, request.method, request.get_full_path(),
                                   request.body)
    return given if hmac.compare_digest(given.encode(), expected.encode()) else ""


def _twilio_signature(request) -> str:
    token = settings.TWILIO_AUTH_TOKEN
    given = request.headers.get("X-Twilio-Signature", "")
    if not token or not given:
        return ""
    url = settings.SITE_URL + request.get_full_path()
    if request.content_type == "application/json":
        try:
            params = request.body.decode()
        except UnicodeDecodeError:
            return ""
    else:
        params = request.POST
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER, ""))
    return given if RequestValidator(token).validate(url, params, given, algorithm=algorithm) else ""


def verified_signature(request, now: float | None = None) -> str:
    """The request's valid signature, or "" when it has none that checks out."""
    now = time.time() if now is None else now
    return _balise_signature(request, now) or _twilio_signature(request)


def claim(signature: str) -> bool:
    """Record SIGNATURE as used; False when it already was (a replay). Call it inside the
    transaction that acts on the callback."""
    now = timezone.now()
    # Twilio's signatures carry no time: keep them as long as a call's URL lives.
    keep = max(2 * settings.INBOUND_MAX_SKEW, settings.TRACKING_LINK_MAX_AGE)
    SeenSignature.objects.filter(seen_at__lt=now - timedelta(seconds=keep)).delete()
    digest = hashlib.sha256(signature.encode()).hexdigest()
    try:
        with transaction.atomic():
            SeenSignature.objects.create(digest=digest, seen_at=now)
    except IntegrityError:
        return False
    return True

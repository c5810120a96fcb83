"""What providers tell Balise back: SMS replies, call outcomes and keypad presses.

A reply "OK", "1" or "oui" acknowledges the open alert that reached that number; a press
on 1 during a call acknowledges the alert of that call. A call answered without pressing
1 is only written on the timeline: answering is not acknowledging.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from balise.alerts.actions import record_event
from balise.alerts.models import Acknowledgement, Alert
from balise.dispatch import outbox
from balise.dispatch.models import Delivery
from balise.people.phones import normalize_phone
from balise.tracking.actions import NotAllowed, answer_alert

ACK_WORDS = {"ok", "okay", "1", "oui", "yes", "o", "y"}
ANSWERED = {"completed", "answered", "in-progress"}
UNANSWERED = {"no-answer", "busy", "failed", "canceled", "cancelled"}


def printable(value) -> str:
    """VALUE as text without control characters (NUL, escapes...) or lone surrogates,
    which no database column takes; line breaks and tabs become spaces."""
    text = str(value)
    return "".join(" " if ch in "\t\n\r" else ch for ch in text
                   if ch in "\t\n\r" or unicodedata.category(ch) not in ("Cc", "Cs"))


def normalize_reply(text: str) -> str:
    """"  Oui ! " -> "oui", "OK." -> "ok": no accents, case, spaces or punctuation."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return re.sub(r"[\W_]+", "", text)


def sms_reply(sender: str, text: str) -> tuple[str, Delivery | None]:
    """Handle an inbound SMS. Returns (result, the delivery it answers): acknowledged,
    unrecognised, ambiguous, no_open_alert or unknown_sender."""
    text = printable(text or "")
    try:
        phone = normalize_phone(sender or "")
    except ValidationError:
        return "unknown_sender", None
    since = timezone.now() - timedelta(seconds=settings.TRACKING_LINK_MAX_AGE)
    reached = list(
        Delivery.objects.filter(
            recipient=phone, state=Delivery.State.SENT, purpose__in=[Delivery.Purpose.ALERT, Delivery.Purpose.ESCALATION],
            alert__state__in=[Alert.State.OPEN, Alert.State.ACKNOWLEDGED], created_at__gte=since,
        ).select_related("alert__person", "contact").order_by("-created_at")
    )
    alerts = {d.alert_id: d for d in reached}
    if not alerts:
        return "no_open_alert", None
    word = normalize_reply(text)
    if word not in ACK_WORDS:
        for d in alerts.values():
            record_event(d.alert, "sms_reply_unrecognised", contact=d.contact_id, text=text[:160])
        return "unrecognised", None
    if len(alerts) > 1:
        # The same number is a contact of several people with an alert open: acknowledging
        # the wrong one would stop someone's escalation. Ask to answer from each link.
        for d in alerts.values():
            record_event(d.alert, "sms_reply_ambiguous", contact=d.contact_id)
            if d.contact is not None:
                outbox.write_notices(d.alert, [d.contact], "reply_unclear")
        return "ambiguous", None
    d = next(iter(alerts.values()))
    try:
        answer_alert(d.alert, channel=Acknowledgement.Channel.SMS, contact=d.contact)
    except NotAllowed:
        return "no_open_alert", None
    return "acknowledged", d


def call_event(delivery_id: str, *, digits: str = "", status: str = "") -> str:
    """A provider's news about one call: its final status, or keys pressed."""
    d = Delivery.objects.select_related("alert", "contact").filter(pk=delivery_id, channel="voice").first()
    if d is None:
        return "unknown_call"
    result = "recorded"
    status = printable(status or "").strip().lower()
    if status in ANSWERED:
        record_event(d.alert, "call_answered", delivery=str(d.pk), contact=d.contact_id)
    elif status in UNANSWERED:
        record_event(d.alert, "call_unanswered", delivery=str(d.pk), contact=d.contact_id, status=status)
    digits = printable(digits or "").strip()
    if digits:
        if digits[0] == "1":
            try:
                answer_alert(d.alert, channel=Acknowledgement.Channel.VOICE, contact=d.contact)
                result = "acknowledged"
            except NotAllowed:
                result = "alert_closed"
        else:
            record_event(d.alert, "call_keypad_other", delivery=str(d.pk), contact=d.contact_id)
    return result

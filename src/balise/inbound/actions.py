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
from django.db.models import Q
from django.utils import timezone

from balise.alerts.actions import record_event
from balise.alerts.models import ACTIVE_STATES, Acknowledgement, Alert
from balise.dispatch import carrier, outbox
from balise.dispatch.models import Delivery
from balise.people.phones import normalize_phone
from balise.tracking.actions import NotAllowed, answer_alert

ACK_WORDS = {"ok", "okay", "1", "oui", "yes", "o", "y"}
ANSWERED = {"completed", "answered", "in-progress"}


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
            alert__state__in=ACTIVE_STATES, created_at__gte=since,
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
        # The SMS asks "reply OK if you go": OK is "on my way", which does not tell the
        # others to stand down (only the police called, or the association, does).
        answer_alert(d.alert, channel=Acknowledgement.Channel.SMS, answer=Acknowledgement.Answer.ON_MY_WAY,
                     contact=d.contact)
    except NotAllowed:
        return "no_open_alert", None
    return "acknowledged", d


# What a keypad press during a call answers (the call says so, twice).
KEYPAD = {"1": Acknowledgement.Answer.ON_MY_WAY, "2": Acknowledgement.Answer.CALLED_POLICE,
          "3": Acknowledgement.Answer.CANNOT_HELP}
# Twilio's answering-machine detection (AnsweredBy) saying nobody picked up in person.
MACHINE = ("machine", "fax")
# The order carrier states come in: a late callback never moves a delivery backwards.
SMS_RANK = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2,
            "delivered": 3, "undelivered": 3, "failed": 3, "read": 4}
SMS_FINAL = 3
CALL_RANK = {"queued": 0, "initiated": 0, "ringing": 1, "answered": 2, "voicemail": 2, "no_answer": 2, "busy": 2,
             "failed": 2}


def call_state(status: str, answered_by: str = "") -> str:
    """A call's carrier state from the provider's CallStatus and AnsweredBy: ringing,
    answered (by a person), voicemail, no_answer, busy, failed; "" for nothing new."""
    status, answered_by = status.strip().lower(), answered_by.strip().lower()
    if answered_by.startswith(MACHINE) and (status in ANSWERED or not status):
        return "voicemail"
    if status in ANSWERED:
        return "answered"
    return {"queued": "queued", "initiated": "queued", "ringing": "ringing", "no-answer": "no_answer",
            "busy": "busy", "failed": "failed", "canceled": "failed", "cancelled": "failed"}.get(status, "")


def _carrier_state(d: Delivery, state: str, error: str, ranks: dict[str, int], final: int | None = None) -> bool:
    """Write STATE (and ERROR, the carrier's code) on D if it moves it forward, with an
    alert event for the timeline. False when it changes nothing (old or repeated news).
    FINAL: the rank of the final states, of which the first received is kept."""
    if state not in ranks:
        return False
    current = Delivery.objects.filter(pk=d.pk).values_list("carrier_state", flat=True).first() or ""
    if current and (current == state or ranks.get(current, -1) > ranks[state]):
        return False
    if final is not None and ranks.get(current) == ranks[state] == final:
        # The first final receipt is the message's: a late "undelivered" after
        # "delivered" (or the reverse) neither flips it nor sends it again.
        return False
    error = printable(error or "").strip()[:20]
    Delivery.objects.filter(pk=d.pk).update(carrier_state=state, carrier_error=error,
                                            carrier_updated_at=timezone.now())
    record_event(d.alert, "carrier_state", delivery=str(d.pk), channel=d.channel, contact=d.contact_id,
                 state=state, **({"error": error} if error else {}))
    return True


def carrier_status(delivery_id: str, *, status: str, error: str = "", provider: str = "") -> str:
    """A provider's delivery report on one SMS: queued, sent, delivered, undelivered or
    failed, with the carrier's error code. Returns "recorded", "unchanged" or
    "unknown_delivery". Undelivered or failed: the SMS goes again through the next
    provider (balise.dispatch.carrier), PROVIDER (default: the delivery's) set aside."""
    d = Delivery.objects.select_related("alert").filter(pk=delivery_id, channel="sms").first()
    if d is None:
        return "unknown_delivery"
    state = printable(status or "").strip().lower()
    if not _carrier_state(d, state, error, SMS_RANK, final=SMS_FINAL):
        return "unchanged"
    if state in ("undelivered", "failed"):
        # (the timeline shows the carrier's state; the re-send is a delivery of its own)
        carrier.resend_elsewhere(d, provider or d.provider)
    return "recorded"


def provider_receipt(event) -> str:
    """A delivery receipt heard on a provider's own connection (an SMPP session, see
    balise.providers.events): matched to its delivery by the key the provider
    remembered or else by the SMSC's message id (the delivery's provider_ref holds the
    ids of its parts), then recorded as carrier_status records a status callback."""
    key = event.key
    if key is None:
        mid = event.message_id
        key = (Delivery.objects.filter(provider=event.provider, channel="sms")
               .filter(Q(provider_ref=mid) | Q(provider_ref__startswith=f"{mid} ") | Q(provider_ref__endswith=f" {mid}")
                       | Q(provider_ref__contains=f" {mid} "))
               .order_by("-created_at").values_list("pk", flat=True).first())
        if key is None:
            return "unknown_delivery"
    return carrier_status(str(key), status=event.state, error=event.error, provider=event.provider)


def provider_incoming(sender: str, text: str) -> str:
    """An SMS received on a provider's own connection: handled as /inbound/sms does."""
    result, _delivery = sms_reply(sender, text)
    return result


def call_event(delivery_id: str, *, digits: str = "", status: str = "", answered_by: str = "", error: str = "") -> str:
    """A provider's news about one call: its status (with answering-machine detection:
    only a person answering counts as reached), or keys pressed."""
    d = Delivery.objects.select_related("alert", "contact").filter(pk=delivery_id, channel="voice").first()
    if d is None:
        return "unknown_call"
    result = "recorded"
    status = printable(status or "").strip().lower()
    state = call_state(status, printable(answered_by or ""))
    if _carrier_state(d, state, error, CALL_RANK):
        if state == "answered":
            record_event(d.alert, "call_answered", delivery=str(d.pk), contact=d.contact_id)
        elif state in ("voicemail", "no_answer", "busy", "failed"):
            record_event(d.alert, "call_unanswered", delivery=str(d.pk), contact=d.contact_id,
                         status=status if state != "voicemail" else "voicemail")
    digits = printable(digits or "").strip()
    if digits:
        answer = KEYPAD.get(digits[0])
        if answer is not None:
            try:
                answer_alert(d.alert, channel=Acknowledgement.Channel.VOICE, answer=answer, contact=d.contact)
                result = "acknowledged" if answer != Acknowledgement.Answer.CANNOT_HELP else "cannot_help"
            except NotAllowed:
                result = "alert_closed"
        else:
            record_event(d.alert, "call_keypad_other", delivery=str(d.pk), contact=d.contact_id)
    return result

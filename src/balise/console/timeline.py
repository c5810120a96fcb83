"""The alert's timeline in words: each AlertEvent as one sentence, with the person, the
contacts and the staff named and the time to the second. No JSON, no internal ids.

`describe_events` is the only place that knows the event kinds; the console and the
back-office's alert page both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from balise.alerts.models import Acknowledgement, Alert, AlertEvent, Kind, Outcome
from balise.labels import staff_name


@dataclass(frozen=True)
class Line:
    at: datetime
    clock: str
    text: str
    # "alarm" (duress, failures), "good" (someone on it), "" otherwise: only for colour.
    tone: str = ""


def clock(dt: datetime) -> str:
    return formats.time_format(timezone.localtime(dt), "H:i:s")


class _Names:
    """Names of everyone an alert's events mention, loaded in a few queries."""

    def __init__(self, alert: Alert, events: list[AlertEvent]):
        from balise.dispatch.models import Delivery

        self.person = alert.person.display_name
        self.contacts = {c.pk: c.name for c in alert.person.contacts.all()}
        ids = {e.data.get("delivery") for e in events if isinstance(e.data, dict) and e.data.get("delivery")}
        self.deliveries = {
            str(d["id"]): d for d in Delivery.objects.filter(alert=alert, id__in=ids).values("id", "contact_id", "purpose")
        } if ids else {}
        staff_ids = {e.data.get("staff") for e in events if isinstance(e.data, dict) and e.data.get("staff")}
        self.staff = {u.pk: staff_name(u) for u in get_user_model().objects.filter(pk__in=staff_ids)} if staff_ids else {}

    def contact(self, contact_id) -> str:
        if contact_id is None:
            return _("the on-call line")
        return self.contacts.get(contact_id) or _("a former contact")

    def of_delivery(self, data: dict) -> str:
        row = self.deliveries.get(str(data.get("delivery")))
        return self.contact(row["contact_id"] if row else data.get("contact"))

    def staff_member(self, staff_id) -> str:
        return self.staff.get(staff_id) or _("a staff member")


def _answer(answer: str) -> str:
    return {
        Acknowledgement.Answer.ON_MY_WAY: _("I am on my way"),
        Acknowledgement.Answer.CALLED_POLICE: _("I called the police"),
        Acknowledgement.Answer.CANNOT_HELP: _("I cannot help"),
    }.get(answer, _("I am on it"))


def _channel(channel: str) -> str:
    try:
        return Acknowledgement.Channel(channel).label
    except ValueError:
        return ""


FAILED_STATES = ("undelivered", "failed", "no_answer", "busy")


def carrier_tone(state: str) -> str:
    """How a carrier state reads: "ok" (it arrived), "bad" (it did not), "wait"."""
    if state in ("delivered", "read", "answered"):
        return "ok"
    if state in FAILED_STATES or state == "voicemail":
        return "bad"
    return "wait"


def carrier_sentence(channel: str, who: str, state: str) -> str:
    """An operator's report on one message as a sentence: "SMS delivered to Alex",
    "Call to Sam: voicemail"."""
    if channel == "voice":
        return _("Call to %(who)s: %(state)s") % {"who": who, "state": carrier_word(state)}
    sentence = {
        "sent": _("SMS to %(who)s handed to the network"),
        "delivered": _("SMS delivered to %(who)s"),
        "undelivered": _("SMS not delivered to %(who)s"),
        "failed": _("SMS to %(who)s refused by the operator"),
        "read": _("SMS read by %(who)s"),
    }.get(state)
    if sentence is None:
        return _("SMS to %(who)s: %(state)s") % {"who": who, "state": carrier_word(state)}
    return sentence % {"who": who}


def carrier_word(state: str) -> str:
    return {
        "accepted": _("accepted"), "scheduled": _("scheduled"), "queued": _("queued"), "sending": _("sending"),
        "sent": _("sent"), "delivered": _("delivered"), "undelivered": _("not delivered"), "failed": _("failed"),
        "read": _("read"), "initiated": _("queued"), "ringing": _("ringing"), "answered": _("answered"),
        "voicemail": _("voicemail"), "no_answer": _("no answer"), "busy": _("busy"),
    }.get(state, state)


def _sentence(event: AlertEvent, alert: Alert, names: _Names) -> tuple[str, str]:
    d = event.data if isinstance(event.data, dict) else {}
    k = event.kind
    if k == "created":
        kind = Kind(d.get("kind", alert.kind)).label if d.get("kind", alert.kind) in Kind.values else ""
        if alert.triggered_at:
            return _("%(kind)s alert from %(person)s received (button pressed at %(time)s)") % {
                "kind": kind, "person": names.person, "time": clock(alert.triggered_at)}, "alarm"
        return _("%(kind)s alert from %(person)s received") % {"kind": kind, "person": names.person}, "alarm"
    if k == "deliveries_planned":
        return _("%(count)d messages and calls to send") % {"count": d.get("count", 0)}, ""
    if k in ("delivery_sent", "delivery_failed", "delivery_retry"):
        who = names.of_delivery(d)
        voice = d.get("channel") == "voice"
        notice = d.get("purpose") == "notice"
        if k == "delivery_retry":
            if voice:
                return _("Call to %(who)s not placed yet: trying again") % {"who": who}, ""
            return _("SMS to %(who)s not sent yet: trying again") % {"who": who}, ""
        if k == "delivery_failed" and d.get("fault"):
            if voice:
                return _("Call to %(who)s set aside after repeated internal errors") % {"who": who}, "alarm"
            return _("SMS to %(who)s set aside after repeated internal errors") % {"who": who}, "alarm"
        if k == "delivery_sent":
            if voice:
                return _("Call placed to %(who)s") % {"who": who}, ""
            if notice:
                return _("Update SMS sent to %(who)s") % {"who": who}, ""
            return _("SMS sent to %(who)s") % {"who": who}, ""
        if voice:
            return _("Call to %(who)s failed") % {"who": who}, "alarm"
        return _("SMS to %(who)s failed") % {"who": who}, "alarm"
    if k == "acknowledged":
        if d.get("contact"):
            who = names.contact(d["contact"])
        elif d.get("staff"):
            who = names.staff_member(d["staff"])
        else:
            who = names.contact(None)
        answer = d.get("answer", "")
        tone = "alarm" if answer == Acknowledgement.Answer.CANNOT_HELP else "good"
        return _("%(who)s: %(answer)s (%(channel)s)") % {
            "who": who, "answer": _answer(answer), "channel": _channel(d.get("channel", ""))}, tone
    if k == "taken":
        return _("%(who)s took charge of the alert") % {"who": names.staff_member(d.get("staff"))}, "good"
    if k == "note":
        return _("Note by %(who)s: %(text)s") % {"who": names.staff_member(d.get("staff")), "text": d.get("text", "")}, ""
    if k == "resolved":
        if d.get("note"):
            return _("Alert closed by %(who)s: %(note)s") % {"who": names.staff_member(d.get("staff")), "note": d["note"]}, "good"
        return _("Alert closed by %(who)s") % {"who": names.staff_member(d.get("staff"))}, "good"
    if k == "outcome":
        label = Outcome(d["outcome"]).label if d.get("outcome") in Outcome.values else ""
        return _("Outcome: %(outcome)s") % {"outcome": label}, ""
    if k == "cancelled":
        return _("%(person)s cancelled her alert with her code") % {"person": names.person}, "good"
    if k == "cancel_refused":
        if d.get("after_limit"):
            return _("A cancel code was typed after the limit of wrong codes: refused"), "alarm"
        return _("A wrong cancel code was typed"), "alarm"
    if k == "cancel_pin_locked":
        return _("%(count)d wrong cancel codes: cancelling from her device is locked, the on-call line is told") % {
            "count": d.get("wrong_pins", 0)}, "alarm"
    if k == "checkin_pin_refused":
        if d.get("locked"):
            return _("%(count)d wrong codes were typed to stop her check-in timer: it could no longer be stopped, "
                     "and raised this alert at its time") % {"count": d.get("wrong_pins", 0)}, "alarm"
        return _("%(count)d wrong codes were typed to stop her check-in timer") % {
            "count": d.get("wrong_pins", 0)}, "alarm"
    if k == "over_budget":
        budget = _("her device") if d.get("budget") == "device" else _("the association")
        if d.get("capped"):
            return _("Too many alerts (limit of %(budget)s): only the on-call line is alerted") % {"budget": budget}, "alarm"
        return _("Too many alerts (limit of %(budget)s), but no on-call line: the contacts are alerted as usual") % {
            "budget": budget}, "alarm"
    if k == "press_joined":
        kind = Kind(d["kind"]).label if d.get("kind") in Kind.values else ""
        return _("New press (%(kind)s) while this alert is open: added to it") % {"kind": kind}, "alarm"
    if k == "escalated_by_press":
        kinds = {v: Kind(v).label for v in (d.get("from"), d.get("to")) if v in Kind.values}
        return _("Alert raised from %(from)s to %(to)s by a new press") % {
            "from": kinds.get(d.get("from"), ""), "to": kinds.get(d.get("to"), "")}, "alarm"
    if k == "on_call_notified":
        return _("The on-call line was told that messages of this alert could not be sent"), "alarm"
    if k == "carrier_state":
        state = str(d.get("state", ""))
        return (carrier_sentence(d.get("channel", ""), names.of_delivery(d), state),
                "alarm" if carrier_tone(state) == "bad" else ("good" if carrier_tone(state) == "ok" else ""))
    if k == "escalation_fault":
        return _("Escalation step %(step)d hit an internal error: trying again") % {"step": d.get("step", 0)}, "alarm"
    if k == "escalation_failed":
        return _("Escalation step %(step)d set aside after repeated internal errors: the on-call line is told") % {
            "step": d.get("step", 0)}, "alarm"
    if k == "duress":
        return _("DURESS CODE typed: the alert looks cancelled to her device but stays open; everyone is called"), "alarm"
    if k == "escalated":
        who = sorted({names.contact(s.get("contact")) for s in d.get("sends", []) if isinstance(s, dict)})
        return _("Escalation, step %(step)d: %(who)s") % {"step": d.get("step", 0), "who": ", ".join(who)}, "alarm"
    if k == "escalation_exhausted":
        return _("Escalation chain finished: nobody left to call"), "alarm"
    if k == "auditor_rearmed":
        return _("Escalation restarted by the safety check"), ""
    if k == "others_told":
        return _("The other contacts were told that someone is on it (%(count)d)") % {"count": d.get("deliveries", 0)}, ""
    if k == "sms_reply_unrecognised":
        return _("%(who)s replied by SMS, not understood: “%(text)s”") % {
            "who": names.contact(d.get("contact")), "text": d.get("text", "")}, ""
    if k == "sms_reply_ambiguous":
        return _("%(who)s replied OK but follows several alerts: asked to answer from the link") % {
            "who": names.contact(d.get("contact"))}, ""
    if k == "call_answered":
        return _("%(who)s picked up the call") % {"who": names.of_delivery(d)}, ""
    if k == "call_unanswered":
        return _("%(who)s did not pick up the call") % {"who": names.of_delivery(d)}, ""
    if k == "call_keypad_other":
        return _("%(who)s pressed another key than 1") % {"who": names.of_delivery(d)}, ""
    return _("Technical event"), ""


def describe_events(alert: Alert, events: list[AlertEvent] | None = None) -> list[Line]:
    """ALERT's timeline as sentences, oldest first."""
    if events is None:
        events = list(alert.events.order_by("at", "id"))
    names = _Names(alert, events)
    lines = []
    for e in events:
        text, tone = _sentence(e, alert, names)
        lines.append(Line(at=e.at, clock=clock(e.at), text=text, tone=tone))
    return lines

"""What the on-call board shows of an alert, as plain dicts for the templates."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.utils import timezone
from django.utils.translation import get_language, gettext as _

from balise.alerts.models import ACTIVE_STATES, Acknowledgement, Alert, AlertEvent, LocationFix
from balise.console.timeline import carrier_tone, carrier_word, clock, describe_events
from balise.dispatch.models import Delivery, EscalationTimer
from balise.dispatch.plans import plan_for
from balise.labels import moment, staff_name
from balise.people.phones import phone_end
from balise.tracking.places import nearest

TRAIL_MAX = 200


def board_alerts(association_ids: list[int]):
    """Open alerts, newest first, of these associations."""
    return (Alert.objects.filter(association__in=association_ids, state__in=ACTIVE_STATES)
            .select_related("person", "association", "taken_by").order_by("-created_at", "-id"))


def pressed_at(alert: Alert):
    """When she pressed: the device's clock when it sent one, else when it was received."""
    return alert.triggered_at or alert.created_at


def last_fix(alert: Alert) -> LocationFix | None:
    return LocationFix.objects.filter(alert=alert).order_by("-recorded_at", "-id").first()


def fix_card(fix: LocationFix | None) -> dict | None:
    if fix is None:
        return None
    place = nearest(fix.lat, fix.lon)
    return {
        "lat": f"{fix.lat:.6f}", "lon": f"{fix.lon:.6f}", "coords": f"{fix.lat:.5f}, {fix.lon:.5f}",
        "acc": round(fix.accuracy_m) if fix.accuracy_m is not None else None,
        "at": fix.recorded_at, "clock": clock(fix.recorded_at), "source": fix.source,
        "place": place.label() if place else "",
    }


def trail(alert: Alert) -> str:
    """The trail as "lat,lon;lat,lon…" (oldest first), for the map's data attribute."""
    fixes = list(LocationFix.objects.filter(alert=alert).order_by("-recorded_at", "-id")
                 .values_list("lat", "lon")[:TRAIL_MAX])[::-1]
    return ";".join(f"{lat:.6f},{lon:.6f}" for lat, lon in fixes)


_DELIVERY_WORDS = {
    Delivery.State.PENDING: ("wait", lambda: _("waiting")),
    Delivery.State.SENDING: ("wait", lambda: _("sending")),
    Delivery.State.SENT: ("ok", lambda: _("sent")),
    Delivery.State.FAILED: ("bad", lambda: _("failed")),
    Delivery.State.CANCELLED: ("off", lambda: _("not sent (closed)")),
}

_ANSWER_TONE = {
    Acknowledgement.Answer.ON_MY_WAY: "good", Acknowledgement.Answer.CALLED_POLICE: "good",
    Acknowledgement.Answer.ACKNOWLEDGED: "good", Acknowledgement.Answer.CANNOT_HELP: "bad",
}


def _delivery_cell(rows: list[Delivery], calls: dict) -> dict | None:
    """The latest delivery of one channel to one recipient, in words."""
    if not rows:
        return None
    d = max(rows, key=lambda r: (r.created_at, str(r.pk)))
    tone, words = _DELIVERY_WORDS[d.state]
    text = words()
    if d.state == Delivery.State.SENT and d.carrier_state:
        # What the operator reported last (its status callbacks): delivered, voicemail…
        tone, text = carrier_tone(d.carrier_state), carrier_word(d.carrier_state)
        if d.carrier_state == "answered":
            text = _("picked up")
    elif d.channel == "voice" and d.state == Delivery.State.SENT:
        status = calls.get(str(d.pk))
        if status == "call_answered":
            tone, text = "ok", _("picked up")
        elif status == "call_unanswered":
            tone, text = "bad", _("no answer")
        else:
            text = _("ringing")
    at = d.sent_at or d.created_at
    return {"tone": tone, "text": text, "clock": clock(at), "count": len(rows)}


def contact_rows(alert: Alert) -> list[dict]:
    """One row per contact, and the association's own line: SMS, call, answer."""
    deliveries = list(Delivery.objects.filter(alert=alert).exclude(purpose=Delivery.Purpose.NOTICE))
    calls = {}
    for e in AlertEvent.objects.filter(alert=alert, kind__in=["call_answered", "call_unanswered"]).order_by("at", "id"):
        calls[str(e.data.get("delivery"))] = e.kind
    acks = list(alert.acknowledgements.select_related("staff").order_by("at", "id"))
    rows = []
    for c in alert.person.contacts.all():
        mine = [d for d in deliveries if d.contact_id == c.pk]
        answer = next((a for a in reversed(acks) if a.contact_id == c.pk), None)
        rows.append({
            "name": c.name, "phone": c.phone, "consent": c.get_consent_display(), "consented": c.has_consented,
            "sms": _delivery_cell([d for d in mine if d.channel == "sms"], calls),
            "call": _delivery_cell([d for d in mine if d.channel == "voice"], calls),
            "answer": _answer_cell(answer), "line": False,
        })
    number = alert.association.on_call_number
    line = [d for d in deliveries if d.contact_id is None]
    staff_answer = next((a for a in reversed(acks) if a.contact_id is None), None)
    rows.append({
        "name": _("On-call line (association)"), "phone": number, "consent": "", "consented": True,
        "sms": _delivery_cell([d for d in line if d.channel == "sms"], calls),
        "call": _delivery_cell([d for d in line if d.channel == "voice"], calls),
        "answer": _answer_cell(staff_answer), "line": True,
    })
    return rows


def _answer_cell(ack: Acknowledgement | None) -> dict | None:
    if ack is None:
        return None
    text = ack.get_answer_display()
    if ack.staff_id is not None:
        text = _("%(who)s is on it") % {"who": staff_name(ack.staff)}
    return {"tone": _ANSWER_TONE.get(ack.answer, ""), "text": text, "clock": clock(ack.at),
            "channel": ack.get_channel_display()}


def escalation(alert: Alert) -> dict:
    """Where the escalation chain is, and when its next step fires (if it will)."""
    chain = plan_for(alert.association, alert.kind).chain
    timer = (EscalationTimer.objects.filter(alert=alert, epoch=alert.epoch, state=EscalationTimer.State.PENDING)
             .order_by("due_at").first()) if alert.state == Alert.State.OPEN else None
    return {"step": min(alert.escalation_step, len(chain)), "steps": len(chain),
            "next_at": timer.due_at if timer else None, "next_clock": _clock_or_day(timer.due_at) if timer else "",
            "stopped": alert.state != Alert.State.OPEN}


def _clock_or_day(dt) -> str:
    """The time alone for today; the date too otherwise (a step due tomorrow at 02:34
    must not read as 02:34 tonight)."""
    if timezone.localtime(dt).date() == timezone.localdate():
        return clock(dt)
    return moment(dt)


def summary(alert: Alert) -> dict:
    """A card of the board's list."""
    return {"alert": alert, "pressed_at": pressed_at(alert), "pressed_clock": clock(pressed_at(alert)),
            "fix": fix_card(last_fix(alert))}


def board_version(association_ids: list[int], focus: int | None) -> str:
    """A token that changes whenever the board's list would, in two queries: every open
    board polls it each second, and renders the list again only when it changed.

    It covers what the cards and the technical alarms show: the open alerts (their state,
    handling, duress, latest position, her name), the open technical alarms (which ones,
    their devices' battery), the language, the day (the clocks read the date of another
    day) and the card in view. Renaming a device or an association waits for the next
    change of those."""
    from balise.supervision.models import SupervisionEvent

    alerts = list(Alert.objects.filter(association__in=association_ids, state__in=ACTIVE_STATES)
                  .values_list("pk", "state", "epoch", "duress", "taken_by_id", "person__display_name")
                  .annotate(fix=Max("fixes__id")).order_by("pk"))
    alarms = (SupervisionEvent.objects.filter(association__in=association_ids, cleared_at__isnull=True)
              .exclude(kind=SupervisionEvent.Kind.TEST_REMINDER)
              .aggregate(n=Count("pk"), last=Max("pk"), battery=Sum("device__battery_percent")))
    state = (get_language(), timezone.localdate().isoformat(), focus, sorted(association_ids), alerts,
             sorted(alarms.items()))
    return hashlib.sha256(repr(state).encode()).hexdigest()[:32]


def detail(alert: Alert) -> dict:
    """Everything of one alert on the board."""
    fix = last_fix(alert)
    return {
        "alert": alert, "pressed_at": pressed_at(alert), "pressed_clock": clock(pressed_at(alert)),
        "received_clock": clock(alert.created_at),
        "fix": fix_card(fix), "trail": trail(alert), "contacts": contact_rows(alert),
        "escalation": escalation(alert), "timeline": describe_events(alert)[::-1],
        "taken_by": staff_name(alert.taken_by) if alert.taken_by_id else "",
    }


def supervision_events(association_ids: list[int], open_: bool = True, reminders: bool = True) -> list[dict]:
    """Supervision events of these associations as sentences, newest first; the test
    reminders (not technical alarms: the board leaves them out) with their result."""
    from balise.supervision.messages import describe
    from balise.supervision.models import SupervisionEvent

    rows = (SupervisionEvent.objects.filter(association__in=association_ids, cleared_at__isnull=open_)
            .select_related("device", "person", "contact").order_by("-raised_at", "-id"))
    if not reminders:
        rows = rows.exclude(kind=SupervisionEvent.Kind.TEST_REMINDER)
    rows = list(rows[:200])
    results = _reminder_results([e for e in rows if e.kind == SupervisionEvent.Kind.TEST_REMINDER])
    return [{"event": e, "text": describe(e), "raised_clock": clock(e.raised_at), "result": results.get(e.pk)}
            for e in rows]


def _reminder_results(events: list) -> dict[int, dict]:
    """{reminder event id: {"tone", "text"}}: her test alert received after the reminder
    (before the next one), still awaited, or missed."""
    if not events:
        return {}
    from balise.supervision.models import SupervisionEvent

    # Overdue as the supervision found it (its clock), not by this page's clock.
    overdue = set(SupervisionEvent.objects.filter(kind=SupervisionEvent.Kind.TEST_OVERDUE, cleared_at__isnull=True,
                                                  person__in={e.person_id for e in events})
                  .values_list("person_id", flat=True))
    tests: dict[int, list] = {}
    for person_id, at in (Alert.objects.filter(person__in={e.person_id for e in events}, kind="test",
                                                created_at__gte=min(e.raised_at for e in events))
                          .order_by("created_at").values_list("person_id", "created_at")):
        tests.setdefault(person_id, []).append(at)
    results = {}
    for e in events:
        test = next((at for at in tests.get(e.person_id, []) if at >= e.raised_at
                     and (e.cleared_at is None or at <= e.cleared_at)), None)
        if test is not None:
            results[e.pk] = {"tone": "ok", "text": _("test received on %(time)s") % {
                "time": moment(test)}}
        elif e.cleared_at is None and e.person_id in overdue:
            results[e.pk] = {"tone": "bad", "text": _("no test yet: overdue")}
        elif e.cleared_at is None:
            results[e.pk] = {"tone": "wait", "text": _("waiting for her test")}
        else:
            results[e.pk] = {"tone": "bad", "text": _("no test before the next reminder")}
    return results


def test_phone(person) -> str:
    """The number her test reminders go to ("" if none)."""
    from balise.supervision.models import PeriodicTest

    return PeriodicTest.objects.filter(person=person).values_list("phone", flat=True).first() or ""


def periodic_tests(person) -> dict:
    """Her periodic tests for her file: the period, where the reminder goes (the end of
    the number only), her last test, the next reminder and the last reminders' results."""
    from balise.supervision.models import PeriodicTest, SupervisionEvent

    plan = PeriodicTest.objects.filter(person=person).first()
    days = plan.period_days if plan is not None and plan.period_days is not None else settings.SUPERVISION_TEST_DAYS
    last_test = (Alert.objects.filter(person=person, kind="test").order_by("-created_at")
                 .values_list("created_at", flat=True).first())
    since = max(person.created_at, last_test) if last_test else person.created_at
    reminders = list(SupervisionEvent.objects.filter(person=person, kind=SupervisionEvent.Kind.TEST_REMINDER)
                     .order_by("-raised_at", "-id")[:10])
    results = _reminder_results(reminders)
    return {
        "plan": plan, "days": days, "default": plan is None or plan.period_days is None,
        "phone_end": phone_end(plan.phone) if plan is not None and plan.phone else "",
        "last_test": last_test, "next_due": since + timedelta(days=days) if days > 0 else None,
        "reminders": [{"sent_at": r.raised_at, "result": results[r.pk]} for r in reminders],
    }

"""What the live page shows, as one plain dict: the template renders it on first load,
and the SSE / polling endpoints send it again as JSON whenever it changes. Only what a
contact needs: her display name, the kind of alert, positions, and the first names the
person gave to her contacts; never a phone number or anything else about her."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import formats, timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from balise.alerts.models import Acknowledgement, Alert, LocationFix
from balise.console.timeline import carrier_sentence
from balise.dispatch.messages import responder_name
from balise.dispatch.models import Channel, Delivery
from balise.tracking.places import bearing_deg, nearest

TRAIL_MAX = 200
# The page waits this long for the offline gazetteer on its first load in a process.
PLACE_WAIT_S = 3.0


def link_expired(alert: Alert, now: datetime) -> bool:
    """A link stops showing anything TRACKING_LINK_TTL_AFTER_CLOSE after the alert closed."""
    if alert.is_active or alert.closed_at is None:
        return False
    return now > alert.closed_at + timedelta(seconds=settings.TRACKING_LINK_TTL_AFTER_CLOSE)


def version(alert_id: int) -> tuple:
    """A cheap fingerprint of everything the page shows: the SSE loop polls it."""
    a = Alert.objects.filter(pk=alert_id).values("state", "epoch", "duress").first()
    fixes = LocationFix.objects.filter(alert_id=alert_id).aggregate(n=Count("id"), last=Max("id"))
    acks = Acknowledgement.objects.filter(alert_id=alert_id).aggregate(n=Count("id"), last=Max("id"))
    reports = Delivery.objects.filter(alert_id=alert_id).aggregate(
        n=Count("id"), sent=Count("id", filter=Q(state=Delivery.State.SENT)),
        failed=Count("id", filter=Q(state=Delivery.State.FAILED)), last=Max("carrier_updated_at"))
    return (a and tuple(a.values()), fixes["n"], fixes["last"], acks["n"], acks["last"], *reports.values())


def _clock(dt: datetime) -> str:
    try:
        return formats.time_format(timezone.localtime(dt), "H:i")
    except (OverflowError, ValueError):
        return _("an unknown time")


def _ago(dt: datetime, now: datetime) -> str:
    if now - dt < timedelta(minutes=1):
        return _("less than a minute ago")
    return _("%(duration)s ago") % {"duration": timesince(dt, now, depth=1)}


def pressed_at(alert: Alert) -> datetime:
    """When she pressed: the device's time of the press, unless it is later than when the
    server got it (a device clock ahead) or missing; an alert queued offline for twelve
    minutes is twelve minutes old."""
    if alert.triggered_at is None or alert.triggered_at > alert.created_at:
        return alert.created_at
    return alert.triggered_at


def _headline(alert: Alert) -> str:
    name = alert.person.display_name
    if alert.state == Alert.State.CANCELLED and not alert.duress:
        return _("%(name)s cancelled her alert") % {"name": name}
    if alert.state == Alert.State.RESOLVED:
        return _("The alert of %(name)s is closed") % {"name": name}
    return {
        "prevention": _("%(name)s feels in danger"),
        "emergency": _("%(name)s is in grave danger"),
        "alarm": _("%(name)s is in grave danger: she triggered her alarm"),
        "test": _("%(name)s is testing her button (no action needed)"),
    }[alert.kind] % {"name": name}


def _answer_sentence(who: str, answer: str, at: str) -> str:
    """"Sam called the police at 21:00.": one sentence per answer."""
    words = {
        "on_my_way": _("%(who)s is on the way (answered at %(time)s)."),
        "called_police": _("%(who)s called the police at %(time)s."),
        "cannot_help": _("%(who)s cannot help (answered at %(time)s)."),
    }.get(answer, _("%(who)s is on it (answered at %(time)s)."))
    return words % {"who": who, "time": at}


# Answers that let the others stand down: the police were called, or the association is on
# it. "On my way" does not: until someone is with her, the others go on calling.
SETTLING = ("called_police", "acknowledged")
# The band names the police first, then who is on the way, then who cannot help.
_BAND_ORDER = {"called_police": 0, "acknowledged": 0, "on_my_way": 1, "cannot_help": 2}


def _status(alert: Alert, answers: list[dict], closed_at_text: str) -> tuple[str, str, str]:
    """(status, tone, text) of the band under the headline. The tone is the band's colour:
    "danger" (nobody on it), "warn" (someone answered, nobody called the police yet),
    "calm" (police called or the association on it), "closed"."""
    if alert.state == Alert.State.CANCELLED and not alert.duress:
        return "cancelled", "closed", _("She cancelled her alert with her code at %(time)s. No action needed.") % {
            "time": closed_at_text}
    if alert.state == Alert.State.RESOLVED:
        return "resolved", "closed", _("Her association closed this alert at %(time)s.") % {"time": closed_at_text}
    latest = {a["who"]: a for a in answers if not a["before_duress"]}  # each one's last word
    current = sorted(latest.values(), key=lambda a: _BAND_ORDER.get(a["answer"], 0))
    said = " ".join(a["text"] for a in current)
    if alert.duress:
        head = _("Her alert was cancelled under duress: she is in grave danger. Do not call her.")
        return "duress", "danger", f"{head} {said}".strip()
    status = "acknowledged" if alert.state == Alert.State.ACKNOWLEDGED else "open"
    if not current:
        return status, "danger", _("Nobody has answered yet. Call 17 or 112.")
    if any(a["answer"] in SETTLING for a in current):
        return status, "calm", said
    helping = [a for a in current if a["answer"] != "cannot_help"]
    if not helping:
        return status, "danger", f"{said} " + _("Nobody else has answered yet. Call 17 or 112.")
    return status, "warn", f"{said} " + _("Nobody has said yet that the police were called.")


def map_links(lat: float, lon: float) -> dict:
    q = f"{lat:.6f},{lon:.6f}"
    return {
        "geo": f"geo:{q}?q={q}",
        "apple": f"https://maps.apple.com/?ll={q}&q={q}",
        "google": f"https://www.google.com/maps/search/?api=1&query={q}",
        "osm": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}",
    }


def _direction(degrees: float) -> str:
    names = [_("to the north"), _("to the north-east"), _("to the east"), _("to the south-east"), _("to the south"),
             _("to the south-west"), _("to the west"), _("to the north-west")]
    return names[int((degrees + 22.5) // 45) % 8]


def place_text(lat: float, lon: float, wait: float = PLACE_WAIT_S) -> str:
    """Where she is in words, from the offline gazetteer: "1.2 km north-east of the
    centre of Lyon 2e (Rhône)" (a street is out of reach offline)."""
    place = nearest(lat, lon, wait=wait)
    if place is None:
        return ""
    if place.distance_km < 0.3 or (place.lat, place.lon) == (0.0, 0.0):
        return _("in the centre of %(place)s") % {"place": place.label()}
    distance = (_("%(m)d m") % {"m": round(place.distance_km * 1000, -1)} if place.distance_km < 1
                else _("%(km)s km") % {"km": formats.number_format(round(place.distance_km, 1), 1)})
    return _("%(distance)s %(direction)s of the centre of %(place)s") % {
        "distance": distance, "direction": _direction(bearing_deg(place.lat, place.lon, lat, lon)),
        "place": place.label()}


def _fix(latest: LocationFix, now: datetime) -> dict:
    if latest.accuracy_m is not None:
        accuracy = _("within %(acc)d m") % {"acc": round(latest.accuracy_m)}
    else:
        accuracy = _("accuracy unknown")
    at = _("at %(time)s, %(ago)s") % {"time": _clock(latest.recorded_at), "ago": _ago(latest.recorded_at, now)}
    return {
        "lat": latest.lat, "lon": latest.lon, "acc": latest.accuracy_m,
        "coords": f"{latest.lat:.5f}, {latest.lon:.5f}",
        "accuracy_text": accuracy,
        "at_text": at,
        "updated_text": _("Position last updated %(at)s.") % {"at": at},
        "stale": now - latest.recorded_at > timedelta(minutes=5),
        "place_text": place_text(latest.lat, latest.lon),
        "links": map_links(latest.lat, latest.lon),
    }


# What a call's carrier state tells a contact (the queued states tell her nothing).
CALL_OUTCOMES = ("ringing", "answered", "voicemail", "no_answer", "busy", "failed")


def _reached(alert: Alert) -> str:
    """Whom the alert's SMS and calls reached, from the carriers' reports: "Alert SMS
    delivered to Alex, Sam; sent to Lou (no delivery report yet); not delivered to Max.
    Call to Alex: answered. Call to Sam: voicemail." (each contact's latest call)."""
    best: dict[str, str] = {}
    calls: dict[str, str] = {}
    rank = {"failed": 0, "sent": 1, "delivered": 2}
    rows = (Delivery.objects.filter(alert=alert, contact__isnull=False).exclude(purpose=Delivery.Purpose.NOTICE)
            .select_related("contact").order_by("contact__position", "created_at", "id"))
    for d in rows:
        name = d.contact.name
        if d.channel == Channel.VOICE:
            outcome = "failed" if d.state == Delivery.State.FAILED else d.carrier_state
            if outcome in CALL_OUTCOMES:
                calls[name] = outcome
            continue
        if d.carrier_state == "delivered":
            state = "delivered"
        elif d.carrier_state in ("undelivered", "failed") or d.state == Delivery.State.FAILED:
            state = "failed"
        elif d.state == Delivery.State.SENT:
            state = "sent"
        else:
            continue
        if rank[state] > rank.get(best.get(name, ""), -1):
            best[name] = state
    parts = []
    for state, words in (("delivered", _("alert SMS delivered to %(names)s")),
                         ("sent", _("sent to %(names)s (no delivery report yet)")),
                         ("failed", _("not delivered to %(names)s"))):
        names = [n for n, s in best.items() if s == state]
        if names:
            parts.append(words % {"names": ", ".join(names)})
    sentences = []
    if parts:
        text = "; ".join(parts)
        sentences.append(text[0].upper() + text[1:] + ".")
    sentences += [carrier_sentence(Channel.VOICE, name, outcome) + "." for name, outcome in calls.items()]
    return " ".join(sentences)


def page_state(alert: Alert, contact, now: datetime | None = None) -> dict:
    from balise.tracking.actions import answered_before_duress, duress_at

    now = now or timezone.now()
    fixes = list(LocationFix.objects.filter(alert=alert).order_by("-recorded_at", "-id")[:TRAIL_MAX])[::-1]
    latest = fixes[-1] if fixes else None
    forced = duress_at(alert)
    acks = list(alert.acknowledgements.select_related("contact").order_by("at", "id"))
    answers = []
    for a in acks:
        who, at = responder_name(a), _clock(a.at)
        before = answered_before_duress(alert, a, forced)
        text = _answer_sentence(who, a.answer, at)
        if before:
            text = text[:-1] + " " + _("(before she was forced to cancel).")
        answers.append({
            "who": who, "mine": contact is not None and a.contact_id == contact.pk,
            "answer": a.answer, "text": text, "at_text": at, "before_duress": before,
        })
    mine = [a for a in answers if a["mine"]]
    my_last = mine[-1] if mine else None
    # Under duress, a contact whose answer came before it is asked to answer again.
    confirm = bool(alert.is_active and my_last and my_last["before_duress"])
    my_answer = my_last["answer"] if my_last and not confirm else ""
    pressed = pressed_at(alert)
    closed_at_text = _clock(alert.closed_at) if alert.closed_at else ""
    status, tone, status_text = _status(alert, answers, closed_at_text)
    police_line = ""
    if status == "cancelled" and mine and any(a["answer"] == "called_police" for a in mine):
        police_line = _("You said you called the police: call them again (17) to tell them that she cancelled "
                        "her alert with her code.")
    confirm_text = ""
    if confirm:
        confirm_text = _("Her alert was cancelled under duress after your answer. Say again what you do now: "
                         "if you called the police, call them back to tell them.")
    fix = _fix(latest, now) if latest is not None else None
    return {
        "name": alert.person.display_name,
        "kind": alert.kind,
        "headline": _headline(alert),
        "since_text": _("Alert raised at %(time)s (%(ago)s)") % {"time": _clock(pressed), "ago": _ago(pressed, now)},
        "status": status,
        "tone": tone,
        "status_text": status_text,
        "duress_text": fix["updated_text"] if alert.duress and fix else "",
        # (under duress the band says it)
        "dont_call": alert.kind != "test" and alert.is_active and not alert.duress,
        "active": alert.is_active,
        "fix": fix,
        "trail": [[f.lat, f.lon] for f in fixes],
        "answers": answers,
        "my_answer": my_answer,
        "confirm": confirm,
        "confirm_text": confirm_text,
        "police_line": police_line,
        "reached_text": _reached(alert),
    }

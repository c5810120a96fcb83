"""What the live page shows, as one plain dict: the template renders it on first load,
and the SSE / polling endpoints send it again as JSON whenever it changes. Only what a
contact needs: her display name, the kind of alert, positions, and the first names the
person gave to her contacts; never a phone number or anything else about her."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max
from django.utils import formats, timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from balise.alerts.models import Acknowledgement, Alert, LocationFix
from balise.dispatch.messages import answer_words, kind_words, responder_name
from balise.tracking.places import nearest

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
    return (a and tuple(a.values()), fixes["n"], fixes["last"], acks["n"], acks["last"])


def _clock(dt: datetime) -> str:
    return formats.time_format(timezone.localtime(dt), "H:i")


def _ago(dt: datetime, now: datetime) -> str:
    if now - dt < timedelta(minutes=1):
        return _("less than a minute ago")
    return _("%(duration)s ago") % {"duration": timesince(dt, now, depth=1)}


def _status(alert: Alert) -> tuple[str, str]:
    if alert.duress:
        return "duress", _("Her alert was cancelled under duress: she is in grave danger. Do not call her.")
    if alert.state == Alert.State.CANCELLED:
        return "cancelled", _("She cancelled her alert. No action needed.")
    if alert.state == Alert.State.RESOLVED:
        return "resolved", _("This alert is closed.")
    if alert.state == Alert.State.ACKNOWLEDGED:
        return "acknowledged", _("Someone is on it. Keep following the page.")
    return "open", _("Nobody has answered yet.")


def map_links(lat: float, lon: float) -> dict:
    q = f"{lat:.6f},{lon:.6f}"
    return {
        "geo": f"geo:{q}?q={q}",
        "apple": f"https://maps.apple.com/?ll={q}&q={q}",
        "google": f"https://www.google.com/maps/search/?api=1&query={q}",
        "osm": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}",
    }


def page_state(alert: Alert, contact, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    fixes = list(LocationFix.objects.filter(alert=alert).order_by("-recorded_at", "-id")[:TRAIL_MAX])[::-1]
    latest = fixes[-1] if fixes else None
    status, status_text = _status(alert)
    fix = None
    if latest is not None:
        place = nearest(latest.lat, latest.lon, wait=PLACE_WAIT_S)
        if latest.accuracy_m is not None:
            accuracy = _("within %(acc)d m") % {"acc": round(latest.accuracy_m)}
        else:
            accuracy = _("accuracy unknown")
        fix = {
            "lat": latest.lat, "lon": latest.lon, "acc": latest.accuracy_m,
            "coords": f"{latest.lat:.5f}, {latest.lon:.5f}",
            "accuracy_text": accuracy,
            "at_text": _("at %(time)s, %(ago)s") % {"time": _clock(latest.recorded_at), "ago": _ago(latest.recorded_at, now)},
            "stale": now - latest.recorded_at > timedelta(minutes=5),
            "place_text": _("near %(place)s") % {"place": place.label()} if place else "",
            "links": map_links(latest.lat, latest.lon),
        }
    acks = list(alert.acknowledgements.select_related("contact").order_by("at", "id"))
    answers = [
        {
            "who": responder_name(a), "mine": contact is not None and a.contact_id == contact.pk,
            "answer": a.answer, "text": answer_words(a.answer), "at_text": _clock(a.at),
        }
        for a in acks
    ]
    mine = [a for a in answers if a["mine"]]
    return {
        "name": alert.person.display_name,
        "kind": alert.kind,
        "headline": f"{alert.person.display_name} {kind_words(alert.kind)}",
        "since_text": _("Alert since %(time)s (%(ago)s)") % {"time": _clock(alert.created_at), "ago": _ago(alert.created_at, now)},
        "status": status,
        "status_text": status_text,
        "active": alert.is_active,
        "fix": fix,
        "trail": [[f.lat, f.lon] for f in fixes],
        "answers": answers,
        "my_answer": mine[-1]["answer"] if mine else "",
    }

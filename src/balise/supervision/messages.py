"""The words of a supervision SMS to the association's on-call line, rendered at send time."""

from __future__ import annotations

from django.conf import settings
from django.utils import translation
from django.utils.timesince import timesince
from django.utils.translation import gettext as _, ngettext

from balise.dispatch.messages import to_gsm7
from balise.labels import moment
from balise.supervision.models import SupervisionEvent

Kind = SupervisionEvent.Kind


def describe(event: SupervisionEvent) -> str:
    """One sentence about the event, in the active language (the board uses it too)."""
    person = event.person.display_name if event.person_id else ""
    device = f"{event.device.get_kind_display()} {event.device.hardware_id}" if event.device_id else ""
    if event.kind == Kind.SILENT:
        seen = event.device.last_seen_at if event.device_id else None
        if seen is None:
            return _("The %(device)s of %(person)s has never sent news since it was paired: is it switched on?") % {
                "device": device, "person": person}
        return _("The %(device)s of %(person)s has sent no news since %(time)s.") % {
            "device": device, "person": person, "time": moment(seen)}
    if event.kind == Kind.LOW_BATTERY:
        level = event.device.battery_percent if event.device_id else None
        return _("The battery of the %(device)s of %(person)s is low (%(level)s%%).") % {
            "device": device, "person": person, "level": level if level is not None else "?"}
    if event.kind == Kind.UNDELIVERED:
        return _("The last two messages to %(contact)s, contact of %(person)s, were not delivered.") % {
            "contact": event.contact.name if event.contact_id else "?", "person": person}
    if event.kind == Kind.TEST_OVERDUE:
        # (true whether or not a reminder could reach her: she may have no phone for it)
        return _("%(person)s has not done her periodic button test: it is overdue.") % {"person": person}
    if event.kind == Kind.MODEM:
        return _("The %(device)s of %(person)s reports its GSM modem unusable: no SMS fallback if the internet "
                 "fails.") % {"device": device, "person": person}
    if event.kind == Kind.MICROPHONE:
        return _("The %(device)s of %(person)s reports its microphone unusable: no recording.") % {
            "device": device, "person": person}
    if event.kind == Kind.BUTTON_LOST and not event.detail:  # a phone's button (it gives no address)
        return _("The button of %(person)s has been disconnected from her %(device)s for more than %(minutes)d "
                 "minutes.") % {"person": person, "device": device, "minutes": settings.SUPERVISION_BUTTON_MINUTES}
    if event.kind == Kind.BUTTON_LOST:
        return _("The button %(button)s of %(person)s has been disconnected from her station for more than "
                 "%(minutes)d minutes.") % {"button": event.detail, "person": person,
                                            "minutes": settings.SUPERVISION_BUTTON_MINUTES}
    if event.kind == Kind.PROVIDER:
        return _("The sending provider %(provider)s is failing: messages go through the others.") % {
            "provider": event.detail}
    if event.kind == Kind.TEST_REMINDER:
        return _("Test reminder sent to %(person)s.") % {"person": person}
    if event.kind in (Kind.SERVER_UNREACHABLE, Kind.ALERT_REFUSED, Kind.EVIDENCE_REJECTED):
        return _reported(event, device, person)
    return _("Technical alarm.")


def _reported(event: SupervisionEvent, device: str, person: str) -> str:
    """An episode a station reported once the server heard it again (supervision.reports)."""
    count = int(event.detail) if event.detail.isdigit() else 1
    words = {"device": device, "person": person, "count": count, "start": moment(event.raised_at),
             "end": moment(event.cleared_at)}
    if event.kind == Kind.SERVER_UNREACHABLE:
        return _("The %(device)s of %(person)s could not reach the server from %(start)s to %(end)s (%(duration)s); "
                 "it reaches it again.") % {**words, "duration": timesince(event.raised_at, event.cleared_at)}
    if event.kind == Kind.ALERT_REFUSED:
        return ngettext("The server refused %(count)d alert from the %(device)s of %(person)s from %(start)s; "
                        "the station kept it and the server took it at %(end)s.",
                        "The server refused %(count)d alerts from the %(device)s of %(person)s from %(start)s; "
                        "the station kept them and the server took them by %(end)s.", count) % words
    return ngettext("The server refused %(count)d evidence record from the %(device)s of %(person)s (%(end)s); "
                    "the station keeps it aside for the association.",
                    "The server refused %(count)d evidence records from the %(device)s of %(person)s (%(end)s); "
                    "the station keeps them aside for the association.", count) % words


def reminder_text() -> str:
    """The reminder to test her button, in the active language: nothing in it tells
    whoever reads her phone what it is about."""
    return _("Reminder: it is time for your usual check. Thank you.")


def notice_text(event: SupervisionEvent) -> str:
    if event.kind == Kind.TEST_REMINDER:
        language = event.person.language if event.person_id else settings.LANGUAGE_CODE
        with translation.override(language):
            return to_gsm7(reminder_text())
    with translation.override(settings.LANGUAGE_CODE):
        return to_gsm7(_("Balise supervision: %(what)s") % {"what": describe(event)})

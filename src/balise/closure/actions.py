"""The end of a person's protection, then the erasure of her personal data.

`close_file` (staff, from her file): her devices come back to the stock with their
tokens revoked, each of her contacts is told by SMS that they will no longer receive her
alerts (a message of the contacts' outbox, like the invitation), her protection ends
today, and the erasure is scheduled after the association's retention period.

`erase_due` (a job: `balise erase-closed`, run daily by cron or a timer, with or without
a dispatcher running): for each closed file past its retention period, her personal data
is erased: her name, codes and own words, her contacts (names, numbers), the numbers
messages went to, her positions, the notes about her and her alerts, the free words of
the audit log about her. What stays is anonymous and feeds the evaluation report: the
person row (association, dates, reason of closing) and her alerts' kinds, times,
acknowledgement times and outcomes. A file with evidence under legal hold is not erased
until the hold is released (evidence keeps its own retention, balise.evidence)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from balise.closure.models import FileClosure, Reason, Retention
from balise.console.actions import audit
from balise.console.models import AuditEntry, PersonNote, Protection
from balise.db import for_update
from balise.integrations.flic.models import CheckIn, FlicButton
from balise.people.models import Contact, Person

# Contacts still told at closing: those who accepted, and those invited who have not answered.
TOLD = (Contact.Consent.ACCEPTED, Contact.Consent.PENDING)
PROTECTION_ENDED = "protection_ended"
# The name left on an erased file (no language: it is stored).
ERASED = "—"


class ClosureError(Exception):
    """The file cannot be closed now; the message is for staff."""


def retention_days(association_id: int) -> int:
    row = Retention.objects.filter(association_id=association_id).first()
    return row.days if row is not None else settings.RETENTION_DAYS


def set_retention(association_id: int, days: int) -> None:
    Retention.objects.update_or_create(association_id=association_id, defaults={"days": days})


def close_file(person: Person, user, reason: str, now: datetime | None = None) -> FileClosure:
    from balise.dispatch import outbox
    from balise.stock.actions import take_back
    from balise.tracking.actions import queue_contact_message

    if reason not in Reason.values:
        raise ClosureError(_("Choose why her protection ends."))
    now = now or timezone.now()
    with transaction.atomic():
        locked = for_update(Person.objects).get(pk=person.pk)
        if FileClosure.objects.filter(person=locked).exists():
            raise ClosureError(_("Her file is already closed."))
        devices = list(locked.devices.all())
        for device in devices:
            take_back(device, user, note=str(Reason(reason).label), now=now)
        # Her Flic page stops working and a check-in timer she left running never fires.
        FlicButton.objects.filter(device__in=devices).update(page_token_hash="")
        CheckIn.objects.filter(person=locked, state=CheckIn.State.PENDING).update(
            state=CheckIn.State.CONFIRMED, closed_at=now)
        told = list(locked.contacts.filter(consent__in=TOLD))
        # The one outbox, as for the invitation (balise.tracking): drained by the dispatcher.
        for contact in told:
            queue_contact_message(contact, PROTECTION_ENDED)
        protection = Protection.objects.filter(person=locked).first()
        today = timezone.localdate(now)
        if protection is None:
            Protection.objects.create(person=locked, ends_on=today)
        elif protection.ends_on is None or protection.ends_on > today:
            protection.ends_on = today
            protection.save(update_fields=["ends_on"])
        closure = FileClosure.objects.create(
            person=locked, association_id=locked.association_id, reason=reason, closed_at=now, closed_by=user,
            erase_after=now + timedelta(days=retention_days(locked.association_id)))
        audit(user, locked.association_id, AuditEntry.Action.EDIT_PERSON, person=locked,
              detail=_("file closed: %(reason)s") % {"reason": Reason(reason).label})
        if told:
            transaction.on_commit(outbox.wake_dispatchers)
        return closure


@dataclass
class Erased:
    erased: int = 0
    held: int = 0
    waiting: int = 0


def _under_legal_hold(person_id: int) -> bool:
    from balise.evidence.models import Case

    return Case.objects.filter(person_id=person_id, state=Case.State.LEGAL_HOLD).exists()


def _messages_pending(person_id: int) -> bool:
    from balise.dispatch.models import Delivery

    return Delivery.objects.filter(contact__person_id=person_id, alert__isnull=True,
                                   state__in=(Delivery.State.PENDING, Delivery.State.SENDING)).exists()


def erase_person(person_id: int, now: datetime) -> None:
    """Erase her personal data, keep what is anonymous (see the module's text)."""
    from balise.alerts.models import Alert, AlertEvent, LocationFix
    from balise.dispatch.models import Delivery
    from balise.stock.models import Movement
    from balise.supervision.models import PeriodicTest, SupervisionEvent
    from balise.tracking.models import ShortLink
    from balise.voice.models import VoiceMessage

    with transaction.atomic():
        person = for_update(Person.objects).get(pk=person_id)
        alerts = Alert.objects.filter(person=person)
        # Messages of no alert hold their words (her name) and a number: the invitations and
        # notices to her contacts, the supervision notices about her, her test reminders.
        about_her = SupervisionEvent.objects.filter(Q(person=person) | Q(contact__person=person))
        Delivery.objects.filter(Q(alert__isnull=True, contact__person=person)
                                | Q(pk__in=about_her.values("notice_id"))).update(recipient="", text="", contact=None)
        PeriodicTest.objects.filter(person=person).delete()
        SupervisionEvent.objects.filter(contact__person=person).update(contact=None)
        SupervisionEvent.objects.filter(person=person).update(person=None)
        Delivery.objects.filter(alert__in=alerts).update(recipient="", contact=None)
        ShortLink.objects.filter(alert__in=alerts).delete()
        person.contacts.all().delete()
        LocationFix.objects.filter(alert__in=alerts).delete()
        # The timeline's free words (notes, names) go; its kinds and times stay.
        AlertEvent.objects.filter(alert__in=alerts).update(data={})
        alerts.update(outcome_note="")
        PersonNote.objects.filter(person=person).delete()
        VoiceMessage.objects.filter(person=person).delete()  # her recorded voice
        CheckIn.objects.filter(person=person).delete()
        FlicButton.objects.filter(device__in=alerts.values("device")).update(
            last_lat=None, last_lon=None, last_accuracy_m=None, last_located_at=None)
        AuditEntry.objects.filter(person=person).update(detail="", changes=[])
        Movement.objects.filter(person=person).update(person=None)
        person.display_name = ERASED
        person.cancel_pin_hash = person.duress_pin_hash = ""
        person.prevention_text = ""
        person.language = Person._meta.get_field("language").default
        person.save(update_fields=["display_name", "cancel_pin_hash", "duress_pin_hash", "prevention_text", "language"])
        FileClosure.objects.filter(person=person).update(erased_at=now, held_since=None)


def erase_due(now: datetime | None = None) -> Erased:
    """Erase every closed file past its retention period (idempotent; safe to run at any
    time, with or without the dispatcher)."""
    now = now or timezone.now()
    result = Erased()
    due = FileClosure.objects.filter(erased_at__isnull=True, erase_after__lte=now).values_list("pk", "person_id")
    for pk, person_id in list(due):
        if _under_legal_hold(person_id):
            FileClosure.objects.filter(pk=pk, held_since__isnull=True).update(held_since=now)
            result.held += 1
        elif _messages_pending(person_id):
            result.waiting += 1  # her contacts are told first
        else:
            erase_person(person_id, now)
            result.erased += 1
    return result

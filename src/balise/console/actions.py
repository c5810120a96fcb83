"""What the association's staff do from the console. Views call these; each is one
transaction, writes the alert's timeline where it concerns an alert, and the audit log."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from balise.alerts.actions import record_event, resolve_alert
from balise.alerts.models import Acknowledgement, Alert, Outcome
from balise.console import pairing
from balise.console.models import AuditEntry, PersonNote, Protection
from balise.db import for_update
from balise.devices.actions import revoke_tokens
from balise.devices.models import Device
from balise.people import actions as people_actions
from balise.people.models import Contact, Person
from balise.tracking.actions import NotAllowed, answer_alert, invite_contact

NOTE_MAX = 2000


class ConsoleError(Exception):
    """An action that cannot be done now (the alert is closed...); the message is for staff."""


def audit(user, association_id: int, action: str, *, person=None, alert=None, detail: str = "") -> AuditEntry:
    return AuditEntry.objects.create(
        association_id=association_id, user=user, action=action, person=person, alert=alert, detail=detail[:300])


def take_charge(alert: Alert, user) -> Alert:
    """The association is on it: the alert is acknowledged (its escalation stops, the
    contacts already reached are told) and the staff member is named on it."""
    with transaction.atomic():
        try:
            answer_alert(alert, channel=Acknowledgement.Channel.STAFF, staff=user)
        except NotAllowed as exc:
            raise ConsoleError("closed") from exc
        locked = for_update(Alert.objects).get(pk=alert.pk)
        locked.taken_by, locked.taken_at = user, timezone.now()
        locked.save(update_fields=["taken_by", "taken_at"])
        record_event(locked, "taken", staff=user.pk)
        audit(user, locked.association_id, AuditEntry.Action.TAKE_CHARGE, person=locked.person, alert=locked)
        return locked


def add_note(alert: Alert, user, text: str) -> None:
    text = (text or "").strip()[:NOTE_MAX]
    if not text:
        raise ConsoleError("empty")
    with transaction.atomic():
        record_event(alert, "note", staff=user.pk, text=text)
        audit(user, alert.association_id, AuditEntry.Action.NOTE, person=alert.person, alert=alert)


def close_alert(alert: Alert, user, outcome: str, note: str = "") -> Alert:
    """Close with an outcome. An alert already closed (cancelled by her, closed by a
    colleague) still gets its outcome if it has none yet."""
    if outcome not in Outcome.values:
        raise ConsoleError("outcome")
    note = (note or "").strip()[:NOTE_MAX]
    with transaction.atomic():
        alert = resolve_alert(alert, staff=user, note=note)
        locked = for_update(Alert.objects).get(pk=alert.pk)
        if locked.outcome:
            raise ConsoleError("already_closed")
        locked.outcome, locked.outcome_note = outcome, note
        locked.save(update_fields=["outcome", "outcome_note"])
        record_event(locked, "outcome", outcome=outcome, staff=user.pk)
        audit(user, locked.association_id, AuditEntry.Action.CLOSE, person=locked.person, alert=locked,
              detail=str(Outcome(outcome).label))
        return locked


# -- people -------------------------------------------------------------------------------

def _save_protection(person: Person, starts_on, ends_on) -> None:
    Protection.objects.update_or_create(person=person, defaults={"starts_on": starts_on, "ends_on": ends_on})


def enrol(user, *, association: int, display_name: str, language: str, cancel_pin: str, duress_pin: str,
          starts_on=None, ends_on=None, contact_name: str = "", contact_phone: str = "") -> Person:
    """A new person with her codes, her protection dates and, if given, her first contact
    (who gets the invitation SMS), in one transaction."""
    with transaction.atomic():
        person = Person(association_id=association, display_name=display_name, language=language)
        person.set_pins(cancel_pin, duress_pin)
        person.save()
        _save_protection(person, starts_on, ends_on)
        if contact_name:
            people_actions.add_contact(person, name=contact_name, phone=contact_phone, language=language)
        audit(user, association, AuditEntry.Action.ENROL, person=person)
        return person


def update_person(person: Person, user, *, display_name: str, language: str, starts_on=None, ends_on=None) -> None:
    with transaction.atomic():
        changed = [f for f, v in (("display_name", display_name), ("language", language)) if getattr(person, f) != v]
        person.display_name, person.language = display_name, language
        person.save(update_fields=["display_name", "language"])
        old = Protection.objects.filter(person=person).first()
        if old is None or (old.starts_on, old.ends_on) != (starts_on, ends_on):
            changed.append("protection")
        _save_protection(person, starts_on, ends_on)
        audit(user, person.association_id, AuditEntry.Action.EDIT_PERSON, person=person, detail=", ".join(changed))


def set_pins(person: Person, user, cancel_pin: str, duress_pin: str) -> None:
    with transaction.atomic():
        person.set_pins(cancel_pin, duress_pin)
        person.save(update_fields=["cancel_pin_hash", "duress_pin_hash"])
        audit(user, person.association_id, AuditEntry.Action.SET_PINS, person=person)


def add_contact(person: Person, user, *, name: str, phone: str, language: str) -> Contact:
    with transaction.atomic():
        contact = people_actions.add_contact(person, name=name, phone=phone, language=language)
        audit(user, person.association_id, AuditEntry.Action.ADD_CONTACT, person=person, detail=name)
        return contact


def resend_invitation(contact: Contact, user) -> None:
    with transaction.atomic():
        invite_contact(contact)
        audit(user, contact.person.association_id, AuditEntry.Action.RESEND_INVITATION, person=contact.person,
              detail=contact.name)


def set_periodic_test(person: Person, user, *, period_days: int | None, phone: str) -> None:
    """How often she is reminded to test her button, and on which phone."""
    from balise.supervision.models import PeriodicTest

    with transaction.atomic():
        PeriodicTest.objects.update_or_create(person=person, defaults={"period_days": period_days, "phone": phone})
        audit(user, person.association_id, AuditEntry.Action.EDIT_PERSON, person=person, detail="periodic test")


def add_person_note(person: Person, user, text: str) -> PersonNote:
    with transaction.atomic():
        note = PersonNote.objects.create(person=person, author=user, text=text[:4000])
        audit(user, person.association_id, AuditEntry.Action.NOTE, person=person)
        return note


# -- devices ------------------------------------------------------------------------------

def add_device(person: Person, user, *, kind: str, hardware_id: str) -> tuple[Device, str]:
    """A new device handed to her, and its one-time pairing code."""
    with transaction.atomic():
        device = Device.objects.create(association_id=person.association_id, holder=person, kind=kind,
                                       hardware_id=hardware_id, status=Device.Status.ASSIGNED)
        return device, pairing_code(device, user)


def pairing_code(device: Device, user) -> str:
    with transaction.atomic():
        code = pairing.create_code(device, user)
        audit(user, device.association_id, AuditEntry.Action.PAIRING_CODE, person=device.holder,
              detail=device.hardware_id)
        return code


def revoke_device(device: Device, user) -> int:
    with transaction.atomic():
        count = revoke_tokens(device)
        audit(user, device.association_id, AuditEntry.Action.REVOKE, person=device.holder, detail=device.hardware_id)
        return count


def revoke_evidence_key(device: Device, user) -> int:
    """A re-installed station has a new evidence key: the old one is revoked, and the
    station registers its new key by itself at its next start (or `balise-station enrol`)."""
    from balise.evidence.models import DeviceKey

    with transaction.atomic():
        count = DeviceKey.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit(user, device.association_id, AuditEntry.Action.REVOKE_EVIDENCE_KEY, person=device.holder,
              detail=device.hardware_id)
        return count

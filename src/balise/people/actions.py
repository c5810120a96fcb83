"""Operations on people protected and their trusted contacts."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from balise.db import for_update
from balise.people.models import MAX_CONTACTS, Contact, Person
from balise.tracking.actions import invite_contact


def add_contact(person: Person, *, name: str, phone: str, language: str = "fr") -> Contact:
    """Register a trusted contact (at most five, E.164, one per number), in the next
    free position; consent starts as pending, and an invitation SMS asks the contact to
    accept or decline."""
    with transaction.atomic():
        # Lock the person so that two concurrent additions cannot both be the fifth.
        for_update(Person.objects).get(pk=person.pk)
        if person.contacts.count() >= MAX_CONTACTS:
            raise ValidationError(
                _("A person can have at most %(max)d trusted contacts."), params={"max": MAX_CONTACTS}, code="too_many"
            )
        taken = set(person.contacts.values_list("position", flat=True))
        position = next(p for p in range(1, MAX_CONTACTS + 1) if p not in taken)
        contact = Contact(person=person, position=position, name=name, phone=phone, language=language)
        contact.full_clean()
        contact.save()
        invite_contact(contact)  # committed with the contact: the invitation SMS is never lost
        return contact



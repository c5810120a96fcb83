"""Demo data for a first run: one association, a staff login, a person with three
contacts and a paired virtual button. Idempotent: running it again refreshes the
staff password and the device token (the old token is revoked)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from balise.associations.models import Association, Membership
from balise.devices.actions import issue_token, revoke_tokens
from balise.devices.models import Device
from balise.people.models import Contact, Person

DEMO_CONTACTS = [
    ("Alex", "+33612345601", "fr"),
    ("Sam", "+33612345602", "fr"),
    ("Robin", "+447700900123", "en"),
]
DEMO_CANCEL_PIN = "1234"
DEMO_DURESS_PIN = "4321"


@dataclass(frozen=True)
class Demo:
    username: str
    password: str
    device_token: str
    device_id: str
    cancel_pin: str
    duress_pin: str


@transaction.atomic
def create_demo() -> Demo:
    association, _ = Association.objects.get_or_create(
        slug="demo", defaults={"name": "Association de démonstration", "on_call_number": "+33140000000"}
    )
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="demo", defaults={"is_staff": True})
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.is_staff = True
    user.save()
    Membership.objects.get_or_create(user=user, association=association, defaults={"role": Membership.Role.ADMIN})
    person = Person.objects.filter(association=association, display_name="Camille").first()
    if person is None:
        person = Person(association=association, display_name="Camille")
        person.set_pins(DEMO_CANCEL_PIN, DEMO_DURESS_PIN)
        person.save()
    for position, (name, phone, language) in enumerate(DEMO_CONTACTS, start=1):
        Contact.objects.get_or_create(
            person=person, position=position,
            defaults={"name": name, "phone": phone, "language": language, "consent": Contact.Consent.ACCEPTED},
        )
    device, _ = Device.objects.get_or_create(
        hardware_id="demo-virtual-button",
        defaults={"association": association, "kind": Device.Kind.VIRTUAL, "holder": person,
                  "status": Device.Status.ASSIGNED},
    )
    revoke_tokens(device)
    token = issue_token(device)
    return Demo("demo", password, token, device.hardware_id, DEMO_CANCEL_PIN, DEMO_DURESS_PIN)

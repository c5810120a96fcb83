"""The people of every test: an association with its staff, a person protected with
five trusted contacts and a paired station, and a second association that must never
see any of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from balise.associations.models import Association, Membership
from balise.devices.actions import issue_token
from balise.devices.models import Device
from balise.people.models import Contact, Person

CANCEL_PIN = "2468"
DURESS_PIN = "1357"


@dataclass
class World:
    association: Association
    staff: object
    person: Person
    contacts: list[Contact]
    device: Device
    token: str
    extra: dict = field(default_factory=dict)

    @property
    def auth(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}


def make_world(slug: str = "lyon", contacts: int = 5, consent: str = Contact.Consent.ACCEPTED) -> World:
    association = Association.objects.create(name=f"France Victimes {slug}", slug=slug, on_call_number="+33472000000")
    staff = get_user_model().objects.create_user(f"alice-{slug}", password="correct horse battery", is_staff=True)
    Membership.objects.create(user=staff, association=association, role=Membership.Role.REFERENT)
    person = Person(association=association, display_name="Camille", language="fr")
    person.set_pins(CANCEL_PIN, DURESS_PIN)
    person.save()
    people = [
        Contact.objects.create(person=person, position=i, name=f"Proche {i}", phone=f"+336123456{i:02d}",
                               language="en" if i == 5 else "fr", consent=consent)
        for i in range(1, contacts + 1)
    ]
    device = Device.objects.create(association=association, holder=person, kind=Device.Kind.STATION,
                                   hardware_id=f"station-{slug}", status=Device.Status.ASSIGNED)
    return World(association, staff, person, people, device, issue_token(device))


def another_holder(world: World, tag: str) -> tuple[Person, Device, str]:
    """A second person of WORLD's association, with the same contacts' numbers and her own
    device (person, device, token): a press while a person's alert is open joins it, so
    tests that need several open alerts at once give each its own person."""
    person = Person(association=world.association, display_name=f"Camille {tag}", language="fr")
    person.set_pins(CANCEL_PIN, DURESS_PIN)
    person.save()
    for c in world.contacts:
        Contact.objects.create(person=person, position=c.position, name=c.name, phone=c.phone, language=c.language,
                               consent=c.consent)
    device = Device.objects.create(association=world.association, holder=person, kind=Device.Kind.STATION,
                                   hardware_id=f"{world.device.hardware_id}-{tag}", status=Device.Status.ASSIGNED)
    return person, device, issue_token(device)


def staff_client(user, second_factor: bool = True):
    """A Django test client logged in to the back-office as USER (on an allowed host);
    with SECOND_FACTOR, her session is also verified by an authenticator, as after a real
    login with a code (referents, administrators and superusers need one)."""
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    if second_factor:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = authenticator(user).persistent_id
        session.save()
    return client


def make_case(world, state: str = "sealed"):
    """An evidence case of WORLD's device, without records: enough for custody and
    access rules (the recordings themselves are tests/evidence' business)."""
    import uuid

    from balise.evidence.models import Case, DeviceKey

    key = DeviceKey.objects.create(device=world.device, public_key_pem="(test)", fingerprint=uuid.uuid4().hex)
    return Case.objects.create(reference=f"BAL-T-{uuid.uuid4().hex[:8].upper()}", session=uuid.uuid4(), state=state,
                               association=world.association, device=world.device, device_key=key, person=world.person)
def authenticator(user):
    """USER's confirmed TOTP device (created if she has none yet)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return (TOTPDevice.objects.filter(user=user, confirmed=True).first()
            or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True))


def totp_code(key: bytes, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows for KEY now (or STEPS_AHEAD 30 s steps later:
    a code is accepted once, and the next step's code is accepted too)."""
    import time

    from django_otp.oath import TOTP

    totp = TOTP(key)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"

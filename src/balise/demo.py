"""Demo data for a first run: one association, a staff login, a person with three
contacts and a paired virtual button; and, for the console's on-call board, histories
made through the real operations: Dominique's (a closed false alarm, then an open alarm
with a trail; her button's battery is low) and Sacha's (an emergency a contact answered
and a worker took in charge). A press while a person's alert is open joins it, so the
two open alerts are two persons'. Idempotent: running it again refreshes the staff password and the device token (the
old token is revoked); the history is made once."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from balise.alerts.actions import FixIn, create_alert
from balise.alerts.models import Acknowledgement, Outcome
from balise.associations.models import Association, Membership
from balise.devices.actions import issue_token, revoke_tokens
from balise.devices.models import Device
from balise.people.models import Contact, Person

DEMO_CONTACTS = [
    ("Alex", "+33612345601", "fr"),
    ("Sam", "+33612345602", "fr"),
    ("Robin", "+447911123456", "en"),
]
HISTORY_CONTACTS = [
    ("Lou", "+33612345611", "fr", Contact.Consent.ACCEPTED),
    ("Nour", "+33612345612", "fr", Contact.Consent.ACCEPTED),
    ("Kim", "+33612345613", "fr", Contact.Consent.PENDING),
]
SECOND_HISTORY_CONTACTS = [
    ("Yanis", "+33612345621", "fr", Contact.Consent.ACCEPTED),
    ("Maëlle", "+33612345622", "fr", Contact.Consent.ACCEPTED),
]
# A walk across Lyon's Part-Dieu: the open alarm's trail.
TRAIL = [(45.7606, 4.8590, 35), (45.7611, 4.8575, 25), (45.7617, 4.8561, 18), (45.7622, 4.8549, 15),
         (45.7629, 4.8538, 12), (45.7633, 4.8527, 10)]
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
    if not Person.objects.filter(association=association, display_name="Dominique").exists():
        _history(association, user)
    create_demo_programme(password)
    return Demo("demo", password, token, device.hardware_id, DEMO_CANCEL_PIN, DEMO_DURESS_PIN)


def _fixes(points, now, step_s: int = 40) -> list[FixIn]:
    start = now - timedelta(seconds=step_s * len(points))
    return [FixIn(lat=lat, lon=lon, accuracy_m=acc, recorded_at=start + timedelta(seconds=step_s * i), source="gps",
                  client_id=uuid.uuid4()) for i, (lat, lon, acc) in enumerate(points, start=1)]


def _holder(association: Association, name: str, pins: tuple[str, str], contacts, **device) -> tuple:
    """A person of the history, her contacts and her device: (person, contacts, device)."""
    person = Person(association=association, display_name=name)
    person.set_pins(*pins)
    person.save()
    rows = [Contact.objects.create(person=person, position=i, name=c_name, phone=phone, language=language,
                                   consent=consent)
            for i, (c_name, phone, language, consent) in enumerate(contacts, start=1)]
    return person, rows, Device.objects.create(association=association, holder=person,
                                               status=Device.Status.ASSIGNED, **device)


def _history(association: Association, user) -> None:
    """Dominique's and Sacha's alerts, raised and handled through the real operations."""
    from balise.console.actions import close_alert, take_charge
    from balise.tracking.actions import answer_alert

    now = timezone.now()
    dominique, _, button = _holder(association, "Dominique", ("2468", "8642"), HISTORY_CONTACTS,
                                   kind=Device.Kind.BUTTON, hardware_id="demo-button-dominique", battery_percent=14,
                                   button_connected=True, last_seen_at=now)
    sacha, sacha_contacts, tag = _holder(association, "Sacha", ("1357", "7531"), SECOND_HISTORY_CONTACTS,
                                         kind=Device.Kind.TAG, hardware_id="demo-tag-sacha", battery_percent=80,
                                         last_seen_at=now)

    def raise_(device, kind: str, points) -> object:
        alert, _ = create_alert(device, client_id=uuid.uuid4(), kind=kind, gesture="demo",
                                triggered_at=now - timedelta(seconds=3), fixes=_fixes(points, now))
        return alert

    false_alarm = raise_(button, "prevention", TRAIL[:1])
    close_alert(false_alarm, user, Outcome.FALSE_ALARM, "Appui par erreur dans son sac ; elle a rappelé aussitôt.")
    raise_(button, "alarm", TRAIL)  # open: nobody has answered yet
    emergency = raise_(tag, "emergency", TRAIL[:2])
    answer_alert(emergency, channel=Acknowledgement.Channel.PAGE, answer=Acknowledgement.Answer.ON_MY_WAY,
                 contact=sacha_contacts[1])
    take_charge(emergency, user)
    for person in (dominique, sacha):
        _quiet(person, now)
    _carrier_reports(dominique)
    _station_and_tests(association, dominique, sacha, now)


def _carrier_reports(person: Person) -> None:
    """The operator's reports on her open alarm's first messages, through the same
    operation as the providers' callbacks: an SMS delivered, a call on voicemail."""
    from balise.dispatch.models import Delivery
    from balise.inbound.actions import call_event, carrier_status

    sent = Delivery.objects.filter(alert__person=person, alert__kind="alarm", state=Delivery.State.SENT,
                                   contact__isnull=False).select_related("contact").order_by("contact__position")
    sms = next((d for d in sent if d.channel == "sms"), None)
    if sms is not None:
        carrier_status(str(sms.pk), status="delivered")
    call = next((d for d in sent if d.channel == "voice"), None)
    if call is not None:
        call_event(str(call.pk), status="completed", answered_by="machine_start")


def _station_and_tests(association: Association, dominique: Person, sacha: Person, now) -> None:
    """Sacha's home station, whose last heartbeat says its microphone is unusable, and
    Dominique's periodic test reminders (to her own phone)."""
    from balise.supervision.models import PeriodicTest

    Device.objects.create(association=association, holder=sacha, kind=Device.Kind.STATION,
                          hardware_id="demo-station-sacha", status=Device.Status.ASSIGNED, last_seen_at=now,
                          station_version="0.1.0", modem_state="ok", microphone_state="unusable",
                          buttons_state=[{"hardware_id": "demo-tag-sacha", "connected": True,
                                          "since": (now - timedelta(days=2)).isoformat()}])
    PeriodicTest.objects.create(person=dominique, phone="+33612345610")


def _quiet(person: Person, now) -> None:
    """The history is for reading: its messages count as sent already (nothing reaches
    the demo's made-up numbers) and the open alarm escalates no further."""
    from balise.alerts.models import AlertEvent
    from balise.dispatch.models import Delivery, EscalationTimer

    unsent = list(Delivery.objects.filter(alert__person=person, state__in=[Delivery.State.PENDING,
                                                                            Delivery.State.SENDING]))
    Delivery.objects.filter(pk__in=[d.pk for d in unsent]).update(
        state=Delivery.State.SENT, sent_at=now, attempts=1, provider="demo", lease_owner="", lease_until=None)
    AlertEvent.objects.bulk_create([
        AlertEvent(alert_id=d.alert_id, kind="delivery_sent", data={
            "delivery": str(d.pk), "channel": d.channel, "purpose": d.purpose, "attempt": 1, "provider": "demo",
            "error": ""})
        for d in unsent])
    # The open alarm's next step is far away: the demo never calls anyone by itself.
    EscalationTimer.objects.filter(alert__person=person, state=EscalationTimer.State.PENDING).update(
        due_at=now + timedelta(days=1))


DEMO_PROGRAMME = "experimentation-fictive"
DEMO_FUNDER = "demo-financeur"


def create_demo_programme(password: str, today=None):
    """A six-month programme of clearly fictitious activity (balise.programmes.sample),
    ended yesterday, so that the evaluation report shows what it will look like; its
    funder logs in as DEMO_FUNDER with the demo's password. Made once."""
    from datetime import timedelta

    from balise.programmes.models import FunderAccess, Programme
    from balise.programmes.sample import generate

    funder, _ = get_user_model().objects.get_or_create(username=DEMO_FUNDER)
    funder.set_password(password)
    funder.save()
    programme = Programme.objects.filter(slug=DEMO_PROGRAMME).first()
    if programme is None:
        today = today or timezone.localdate()
        ends_on = today - timedelta(days=1)
        starts_on = ends_on - timedelta(days=182)
        programme = generate(
            slug=DEMO_PROGRAMME, name="Expérimentation fictive – Région Exemple", funder="Région Exemple (fictive)",
            associations=[("demo", "Association de démonstration"), ("fictive-nord", "Association fictive du Nord"),
                          ("fictive-sud", "Association fictive du Sud")],
            starts_on=starts_on, ends_on=ends_on, persons=120, alerts=1500, budget=150, recent_tests=True).programme
    FunderAccess.objects.get_or_create(user=funder, programme=programme)
    return programme

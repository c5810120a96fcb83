"""A programme of two associations with alerts at chosen times (for the report tests)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from balise.alerts.models import Acknowledgement, Alert
from balise.people.models import Person
from balise.programmes.models import FunderAccess, Programme
from tests.personas import another_holder, make_world

START = date(2026, 3, 1)
END = date(2026, 8, 31)


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour), timezone.get_current_timezone())


def alert(world, kind: str, when: datetime, *, outcome: str = "", contact_after: float | None = None,
          taken_after: float | None = None, person=None, device=None) -> Alert:
    row = Alert.objects.create(client_id=uuid.uuid4(), device=device or world.device, person=person or world.person,
                               association=world.association, kind=kind, state=Alert.State.RESOLVED, outcome=outcome)
    Alert.objects.filter(pk=row.pk).update(
        created_at=when, taken_at=when + timedelta(seconds=taken_after) if taken_after is not None else None)
    if contact_after is not None:
        ack = Acknowledgement.objects.create(alert=row, contact=world.contacts[0], channel="page", answer="on_my_way")
        Acknowledgement.objects.filter(pk=ack.pk).update(at=when + timedelta(seconds=contact_after))
    return row


def programme(*worlds, slug="region-test") -> Programme:
    p = Programme.objects.create(name="Expérimentation Test", slug=slug, funder_name="Région Test",
                                 funder_kind="region", starts_on=START, ends_on=END, device_budget=100)
    p.associations.set([w.association for w in worlds])
    return p


def funder(p: Programme, name: str = "financeur"):
    user = get_user_model().objects.create_user(name, password="correct horse battery")
    FunderAccess.objects.create(user=user, programme=p)
    return user


def busy_world(slug: str, alerts: int, people: int = 1):
    """A world whose person (and PEOPLE-1 others) raised ALERTS emergencies in March."""
    world = make_world(slug)
    holders = [(world.person, world.device)] + [another_holder(world, f"p{i}")[:2] for i in range(people - 1)]
    Person.objects.filter(association=world.association).update(created_at=at(START))  # enrolled at the start
    for i in range(alerts):
        person, device = holders[i % len(holders)]
        alert(world, "emergency", at(date(2026, 3, 2 + i % 20)), outcome="contacts", contact_after=60 + i,
              taken_after=300 + 10 * i, person=person, device=device)
    return world

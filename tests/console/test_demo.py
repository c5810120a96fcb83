"""The demo data is valid and gives the on-call board something real to show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from balise.alerts.models import Alert
from balise.associations.models import Association
from balise.demo import create_demo
from balise.dispatch.models import Delivery, EscalationTimer
from balise.people.models import Contact, Person
from balise.supervision.checks import run_checks
from balise.supervision.models import SupervisionEvent
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def test_the_demo_is_valid_and_fills_the_board(django_user_model):
    demo = create_demo()
    association = Association.objects.get(slug="demo")
    association.full_clean()
    for contact in Contact.objects.all():
        contact.full_clean()  # the UK number used to fail here
    for person in Person.objects.all():
        person.full_clean()
    # A press while a person's alert is open joins it: the two open alerts are two persons'.
    alerts = {a.kind: a for a in Alert.objects.filter(person__display_name="Dominique")}
    assert set(alerts) == {"alarm", "prevention"}
    assert alerts["alarm"].state == Alert.State.OPEN and alerts["alarm"].fixes.count() == 6
    assert alerts["prevention"].state == Alert.State.RESOLVED and alerts["prevention"].outcome == "false_alarm"
    assert alerts["prevention"].closed_at <= alerts["alarm"].created_at
    [emergency] = Alert.objects.filter(person__display_name="Sacha")
    assert emergency.kind == "emergency" and emergency.state == Alert.State.ACKNOWLEDGED
    assert emergency.taken_by.username == "demo" and emergency.acknowledgements.filter(contact__person=emergency.person).exists()
    assert not Alert.objects.filter(joined_presses__isnull=False).exists()  # each press raised its own alert
    assert run_checks(timezone.now()) == (2, 0)  # the low-battery button, Sacha's station's microphone

    user = django_user_model.objects.get(username=demo.username)
    board = staff_client(user).get(reverse("console:board_list")).content.decode()
    assert board.count("data-alert=") == 2 and "data-supervision=" in board
    page = staff_client(user).get(reverse("console:alert", args=[alerts["alarm"].pk])).content.decode()
    assert "SMS délivré à Lou" in page  # the operator's report, as its callback writes it
    # Every technical alarm of a device says whose it is ("… de Sacha", never "… de  n'a jamais…").
    assert not SupervisionEvent.objects.filter(device__isnull=False, person__isnull=True).exists()

    # The history is for reading: nothing is left to send, the alarm escalates no further today.
    # (the supervision notices of the checks run above excepted)
    assert not (Delivery.objects.filter(state__in=["pending", "sending"]).exclude(alert__person__display_name="Camille")
                .exclude(purpose="supervision").exists())
    assert not EscalationTimer.objects.filter(state="pending", due_at__lt=timezone.now() + timedelta(hours=12)).exists()

    again = create_demo()  # idempotent: the history is made once
    assert again.device_token != demo.device_token
    assert Alert.objects.exclude(person__display_name__startswith="Fictive").count() == 3  # (and the programme: tests/programme)

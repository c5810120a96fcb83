"""End of protection: her devices back in stock, her contacts told by SMS, her personal
data erased after the association's retention period (not under a legal hold), and
anonymous figures kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from balise.alerts.models import Alert, LocationFix
from balise.closure import actions
from balise.closure.models import FileClosure
from balise.devices.models import Device
from balise.dispatch.messages import render_contact_message
from balise.integrations.flic.models import CheckIn
from balise.people.models import Person
from balise.stock import actions as stock
from balise.stock.models import State
from balise.dispatch.models import Delivery
from balise.voice.models import VoiceMessage
from tests.contacts.helpers import raise_alert
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def _close(world, reason="ended"):
    return staff_client(world.staff).post(reverse("closure:close", args=[world.person.pk]), {"reason": reason})


def test_closing_her_file_returns_her_devices_and_tells_her_contacts(world):
    [item] = stock.receive(world.association.pk, stock.parse("BTN-1", "button")[0], world.staff)
    stock.assign(item, world.person, world.staff)
    world.contacts[4].consent = "declined"
    world.contacts[4].save()
    assert _close(world, "moved").status_code == 302
    closure = FileClosure.objects.get(person=world.person)
    assert closure.reason == "moved" and closure.closed_by == world.staff
    assert not Device.objects.filter(holder=world.person).exists()
    item.refresh_from_db()
    assert item.state == State.RETURNED and item.device.status == Device.Status.RETURNED
    world.device.refresh_from_db()
    assert world.device.status == Device.Status.RETURNED
    assert not world.device.credentials.filter(revoked_at__isnull=True).exists()
    told = Delivery.objects.filter(template=actions.PROTECTION_ENDED, alert__isnull=True)
    assert sorted(m.contact_id for m in told) == sorted(c.pk for c in world.contacts[:4])
    text = render_contact_message("protection_ended", world.contacts[0], "")
    assert "Camille" in text and "ne recevrez plus" in text
    page = staff_client(world.staff).get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert "Dossier clos" in page
    assert _close(world).status_code == 302 and FileClosure.objects.count() == 1  # (once)


def test_a_bad_reason_is_refused(world):
    _close(world, "bored")
    assert not FileClosure.objects.exists()


def test_personal_data_is_erased_after_the_retention_period_and_statistics_stay(world):
    alert = raise_alert(world, "alarm")
    assert LocationFix.objects.filter(alert=alert).exists()
    actions.set_retention(world.association.pk, 30)
    now = timezone.now()
    VoiceMessage.objects.create(person=world.person, audio=b"OggS", content_type="audio/ogg", size=4, sha256="0" * 64)
    timer = CheckIn.objects.create(person=world.person, device=world.device, due_at=now + timedelta(hours=2))
    actions.close_file(world.person, world.staff, "ended", now=now)
    timer.refresh_from_db()
    assert timer.state == CheckIn.State.CONFIRMED  # a check-in she left running never fires
    Delivery.objects.filter(alert__isnull=True).update(state="sent")
    assert actions.erase_due(now + timedelta(days=29)).erased == 0
    assert Person.objects.get(pk=world.person.pk).display_name == "Camille"
    assert actions.erase_due(now + timedelta(days=31)).erased == 1
    person = Person.objects.get(pk=world.person.pk)
    assert person.display_name == actions.ERASED and person.cancel_pin_hash == "" and not person.contacts.exists()
    assert not LocationFix.objects.filter(alert__person=person).exists()
    assert not VoiceMessage.objects.filter(person=person).exists()  # her recorded voice
    assert not alert.deliveries.exclude(recipient="").exists()
    # Nor the invitations and the "you will no longer receive alerts" SMS (her name, their numbers).
    assert not Delivery.objects.filter(alert__isnull=True).exclude(recipient="", text="").exists()
    # The alert itself stays, anonymous, for the report.
    kept = Alert.objects.get(pk=alert.pk)
    assert kept.kind == "alarm" and kept.association_id == world.association.pk
    assert FileClosure.objects.get(person=person).erased_at is not None
    assert actions.erase_due(now + timedelta(days=32)).erased == 0  # (idempotent)


def test_the_erasure_waits_for_her_contacts_to_be_told(world):
    now = timezone.now()
    actions.close_file(world.person, world.staff, "withdrew", now=now)
    result = actions.erase_due(now + timedelta(days=365))
    assert result.erased == 0 and result.waiting == 1


def test_evidence_under_legal_hold_holds_the_erasure(world, monkeypatch):
    now = timezone.now()
    actions.close_file(world.person, world.staff, "deceased", now=now)
    Delivery.objects.filter(alert__isnull=True).update(state="sent")
    monkeypatch.setattr(actions, "_under_legal_hold", lambda person_id: person_id == world.person.pk)
    result = actions.erase_due(now + timedelta(days=365))
    assert result.held == 1 and result.erased == 0
    assert Person.objects.get(pk=world.person.pk).display_name == "Camille"
    assert FileClosure.objects.get(person=world.person).held_since is not None


def test_only_administrators_set_the_retention_period(world):
    from balise.associations.models import Membership

    staff = staff_client(world.staff)
    assert staff.get(reverse("closure:retention")).status_code == 403  # a referent
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.ADMIN)
    assert staff.post(reverse("closure:retention"), {"association": world.association.pk, "days": 0}).status_code == 400
    assert staff.post(reverse("closure:retention"), {"association": world.association.pk, "days": 60}).status_code == 302
    assert actions.retention_days(world.association.pk) == 60

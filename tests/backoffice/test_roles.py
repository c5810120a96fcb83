"""The back-office follows each staff member's role in her association: every member
sees her association's people, alerts and devices (and nothing of another association);
support workers and referents enrol and edit; only administrators delete; accounts and
roles are the platform superusers' business."""

from __future__ import annotations

import pytest
from django.urls import reverse

from balise.associations.models import Membership
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def as_role(world, role):
    Membership.objects.filter(user=world.staff).update(role=role)
    return staff_client(world.staff)


def person_form(person) -> dict:
    return {"display_name": person.display_name + " B", "language": person.language,
            "contacts-TOTAL_FORMS": "0", "contacts-INITIAL_FORMS": "0"}


@pytest.mark.parametrize("role", list(Membership.Role))
def test_every_member_sees_her_association_and_only_hers(world, other_world, role):
    staff = as_role(world, role)
    for name in ("alerts_alert", "people_person", "people_contact", "devices_device", "evidence_case"):
        assert staff.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    listing = staff.get(reverse("admin:people_person_changelist")).content.decode()
    assert world.person.display_name in listing
    assert staff.get(reverse("admin:people_person_change", args=[other_world.person.pk])).status_code == 302
    assert staff.get(reverse("admin:people_person_change", args=[world.person.pk])).status_code == 200


def test_a_read_only_member_cannot_change_anything(world):
    staff = as_role(world, Membership.Role.VIEWER)
    url = reverse("admin:people_person_change", args=[world.person.pk])
    assert staff.post(url, person_form(world.person)).status_code == 403
    assert staff.get(reverse("admin:people_person_add")).status_code == 403
    world.person.refresh_from_db()
    assert not world.person.display_name.endswith(" B")


@pytest.mark.parametrize("role", [Membership.Role.WORKER, Membership.Role.REFERENT, Membership.Role.ADMIN])
def test_workers_referents_and_administrators_enrol_and_edit(world, role):
    staff = as_role(world, role)
    assert staff.get(reverse("admin:people_person_add")).status_code == 200
    delete = staff.get(reverse("admin:people_person_delete", args=[world.person.pk]))
    assert delete.status_code == (200 if role == Membership.Role.ADMIN else 403)


def test_accounts_and_roles_belong_to_superusers(world):
    staff = as_role(world, Membership.Role.ADMIN)
    membership = Membership.objects.get(user=world.staff)
    assert staff.get(reverse("admin:associations_membership_changelist")).status_code == 200
    assert staff.get(reverse("admin:associations_membership_add")).status_code == 403
    assert staff.post(reverse("admin:associations_membership_change", args=[membership.pk]),
                      {"user": world.staff.pk, "association": world.association.pk, "role": "admin"}).status_code == 403
    assert staff.get(reverse("admin:auth_user_changelist")).status_code == 403


@pytest.mark.parametrize(("role", "acknowledged"), [(Membership.Role.VIEWER, False), (Membership.Role.WORKER, True)])
def test_staff_acknowledge_from_the_alert_list_unless_read_only(world, role, acknowledged):
    import uuid

    from balise.alerts.actions import create_alert
    from balise.alerts.models import Alert

    alert, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency", gesture="double")
    staff = as_role(world, role)
    staff.post(reverse("admin:alerts_alert_changelist"), {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert (alert.acknowledged_at is not None) is acknowledged
    assert (alert.state == Alert.State.ACKNOWLEDGED) is acknowledged

"""What staff change in the Django admin (a person, a Flic button, a stock device; an
addition, a deletion, an admin action) reaches the audit log of the object's association
like what they do in the console: who, when, on what, the changed fields in words (never
a value, never raw JSON), read by that association's administrators only. Opening a
person's page in the admin is recorded too."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import translation

from balise.associations.models import Membership
from balise.console.models import AuditEntry
from balise.devices.models import Device
from balise.integrations.flic.models import FlicButton
from balise.people.models import Contact
from balise.stock import actions as stock
from tests.integrations.flic import register
from tests.personas import staff_client

pytestmark = pytest.mark.django_db
Action = AuditEntry.Action


def administrator(world, name: str):
    """An administrator of WORLD's association: she reads its audit log."""
    user = get_user_model().objects.create_user(f"{name}-{world.association.slug}", password="x", is_staff=True)
    Membership.objects.create(user=user, association=world.association, role=Membership.Role.ADMIN)
    return staff_client(user)


def audit_page(client) -> str:
    with translation.override("fr"):
        response = client.get(reverse("console:audit"), HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 200
    return response.content.decode()


def stock_device(world, serial: str) -> Device:
    [line], errors = stock.parse(serial, "button")
    assert errors == []
    stock.receive(world.association.pk, [line], world.staff)
    return Device.objects.get(hardware_id=serial)


def test_a_person_a_flic_button_and_a_stock_item_changed_in_the_admin_are_in_her_associations_audit_log(
        world, other_world):
    staff = staff_client(world.staff)  # a referent: she changes, she does not read the log
    flic = register(world, serial="BC44-B06243", button_uuid=None)
    item = stock_device(world, "BTN-0042")

    r = staff.post(reverse("admin:people_person_change", args=[world.person.pk]),
                   {"association": world.association.pk, "display_name": "Camille R.", "language": "en",
                    "contacts-TOTAL_FORMS": "0", "contacts-INITIAL_FORMS": "0"})
    assert r.status_code == 302
    r = staff.post(reverse("admin:flic_flicbutton_change", args=[flic.pk]), {"uuid": "ab" * 16})
    assert r.status_code == 302
    r = staff.post(reverse("admin:devices_device_change", args=[item.pk]),
                   {"association": world.association.pk, "holder": "", "kind": item.kind, "hardware_id": "BTN-0043",
                    "status": item.status})
    assert r.status_code == 302

    changes = AuditEntry.objects.filter(action=Action.ADMIN_CHANGE).order_by("id")
    assert [(e.model, e.user_id, e.association_id) for e in changes] == [
        ("people.person", world.staff.pk, world.association.pk),
        ("flic.flicbutton", world.staff.pk, world.association.pk),
        ("devices.device", world.staff.pk, world.association.pk)]
    assert changes[0].person_id == world.person.pk and changes[1].person_id == world.person.pk

    html = audit_page(administrator(world, "admin"))
    assert "modifié dans l&#x27;administration" in html
    assert "personne protégée « Camille R. » : Modification de nom affiché et langue." in html
    assert "Bouton Flic « BC44-B06243 » : Modification de uuid Flic." in html
    assert "appareil « bouton appui/relâche BTN-0043 » : Modification de identifiant matériel." in html
    assert '"changed"' not in html and '"fields"' not in html  # words, not the stored message
    assert "Camille R." not in audit_page(administrator(other_world, "admin"))


def test_a_person_change_names_the_fields_never_their_values(world):
    staff = staff_client(world.staff)
    url = reverse("admin:people_person_change", args=[world.person.pk])
    staff.post(url, {"association": world.association.pk, "display_name": "Camille", "language": "fr",
                     "prevention_text": "Appelle-moi au 0612345678", "contacts-TOTAL_FORMS": "0",
                     "contacts-INITIAL_FORMS": "0"})
    entry = AuditEntry.objects.get(action=Action.ADMIN_CHANGE)
    html = audit_page(administrator(world, "admin"))
    assert "message de prévention" in html and "0612345678" not in html
    assert world.person.cancel_pin_hash not in str(entry.changes) + entry.detail


def test_opening_her_page_in_the_admin_is_recorded_and_a_list_is_not(world):
    staff = staff_client(world.staff)
    assert staff.get(reverse("admin:people_person_changelist")).status_code == 200
    assert not AuditEntry.objects.exists()
    assert staff.get(reverse("admin:people_person_change", args=[world.person.pk])).status_code == 200
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.user_id, entry.person_id) == (Action.VIEW_PERSON, world.staff.pk, world.person.pk)
    assert "a consulté le dossier" in audit_page(administrator(world, "admin"))


def test_additions_deletions_and_actions_in_the_admin_are_recorded(world, other_world):
    admin_client = administrator(world, "admin")
    r = admin_client.post(reverse("admin:flic_flicbutton_register"),
                          {"association": world.association.pk, "serials": "BC44-B00001\nBC44-B00002"})
    assert r.status_code == 302
    added = AuditEntry.objects.filter(action=Action.ADMIN_ADD, model="flic.flicbutton")
    assert sorted(added.values_list("detail", flat=True)) == ["BC44-B00001", "BC44-B00002"]

    # The bulk delete action: one entry per row deleted.
    buttons = list(FlicButton.objects.filter(device__hardware_id__startswith="BC44-B0000").values_list("pk", flat=True))
    r = admin_client.post(reverse("admin:flic_flicbutton_changelist"),
                          {"action": "delete_selected", "_selected_action": buttons, "post": "yes"})
    assert r.status_code == 302 and not FlicButton.objects.filter(pk__in=buttons).exists()
    deleted = AuditEntry.objects.filter(action=Action.ADMIN_DELETE, model="flic.flicbutton")
    assert sorted(deleted.values_list("detail", flat=True)) == ["BC44-B00001", "BC44-B00002"]

    # An action of the list: on each contact it acted on, with its name in words.
    contact = world.contacts[0]
    Contact.objects.filter(pk=contact.pk).update(consent=Contact.Consent.PENDING)
    admin_client.post(reverse("admin:people_contact_changelist"),
                      {"action": "send_invitation", "_selected_action": [contact.pk]})
    action = AuditEntry.objects.get(action=Action.ADMIN_ACTION)
    assert (action.person_id, action.model) == (world.person.pk, "people.contact")
    html = audit_page(admin_client)
    assert "a lancé une action de l&#x27;administration" in html
    assert "proche « Proche 1 (1) » : Renvoyer le SMS d&#x27;invitation" in html
    assert "supprimé dans l&#x27;administration" in html and "ajouté dans l&#x27;administration" in html
    assert "BC44-B00001" not in audit_page(administrator(other_world, "admin"))

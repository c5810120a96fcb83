"""A staff member of two associations acts in each with her role THERE: administrator in
Lyon and read-only in Oise, she manages Lyon and only looks at Oise. Every permission
(view, change, delete, the actions of the lists, the rows of a page) is decided by her
role in the object's association; the choices of a form list only objects of
associations where she may edit, and a forged id of another association is a form error;
evidence follows the same rule."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from balise.alerts.actions import create_alert
from balise.alerts.models import Alert
from balise.associations.models import Membership
from balise.dispatch.models import Delivery
from balise.evidence import actions as evidence
from balise.evidence.models import Case, CustodyRecord
from balise.people.models import Contact, Person
from tests.personas import make_case, staff_client

pytestmark = pytest.mark.django_db

ADMIN, REFERENT, WORKER, VIEWER = Membership.Role.ADMIN, Membership.Role.REFERENT, Membership.Role.WORKER, Membership.Role.VIEWER


@pytest.fixture
def alice(world, other_world):
    """World's staff member: administrator in Lyon (world), read-only in Oise (other_world)."""
    Membership.objects.filter(user=world.staff).update(role=ADMIN)
    Membership.objects.create(user=world.staff, association=other_world.association, role=VIEWER)
    return staff_client(world.staff)


def person_form(person, **over) -> dict:
    return {"association": person.association_id, "display_name": person.display_name + " B",
            "language": person.language, "contacts-TOTAL_FORMS": "0", "contacts-INITIAL_FORMS": "0", **over}


def device_form(device, **over) -> dict:
    return {"association": device.association_id, "holder": device.holder_id or "", "kind": device.kind,
            "hardware_id": device.hardware_id, "status": device.status, **over}


def test_she_edits_and_deletes_where_she_administers_and_only_looks_where_she_reads(alice, world, other_world):
    mine, theirs = world.person, other_world.person
    for person in (mine, theirs):
        assert alice.get(reverse("admin:people_person_change", args=[person.pk])).status_code == 200  # she sees both
    assert alice.post(reverse("admin:people_person_change", args=[theirs.pk]), person_form(theirs)).status_code == 403
    assert alice.get(reverse("admin:people_person_delete", args=[theirs.pk])).status_code == 403
    assert alice.post(reverse("admin:people_person_change", args=[mine.pk]), person_form(mine)).status_code == 302
    assert alice.get(reverse("admin:people_person_delete", args=[mine.pk])).status_code == 200
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.display_name == "Camille" and mine.display_name == "Camille B"
    contact = other_world.contacts[0]
    r = alice.post(reverse("admin:people_contact_change", args=[contact.pk]),
                   {"name": "Changé", "phone": contact.phone, "language": contact.language})
    assert r.status_code == 403
    r = alice.post(reverse("admin:devices_device_change", args=[other_world.device.pk]),
                   device_form(other_world.device, status="lost"))
    assert r.status_code == 403
    assert alice.get(reverse("admin:devices_device_delete", args=[other_world.device.pk])).status_code == 403
    other_world.device.refresh_from_db()
    contact.refresh_from_db()
    assert other_world.device.status == "assigned" and contact.name == "Proche 1"


def test_the_rows_of_a_page_follow_the_role_in_its_association(alice, world, other_world):
    def contact_rows(person):
        page = alice.get(reverse("admin:people_person_change", args=[person.pk]))
        [formset] = [f for f in page.context["inline_admin_formsets"] if f.opts.model is Contact]
        return formset.has_add_permission, formset.has_change_permission, formset.has_delete_permission

    assert contact_rows(world.person) == (True, True, True)
    assert contact_rows(other_world.person) == (False, False, False)
    # the inlines themselves ask her role in the parent row's association
    from django.contrib.admin import site
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = world.staff
    for inline in site.get_model_admin(Person).get_inline_instances(request, world.person):
        for parent, allowed in ((world.person, True), (other_world.person, False)):
            assert inline.has_view_permission(request, parent)
            assert inline.has_change_permission(request, parent) is allowed
            assert inline.has_add_permission(request, parent) is allowed
            assert inline.has_delete_permission(request, parent) is allowed
    contact = site.get_model_admin(Contact)
    [messages] = contact.get_inline_instances(request, world.contacts[0])
    assert messages.has_view_permission(request, other_world.contacts[0])
    assert not messages.has_change_permission(request, other_world.contacts[0])


def test_delete_selected_refuses_rows_of_an_association_where_she_only_reads(alice, world, other_world):
    Alert.objects.all().delete()  # (the people have no alerts: only PROTECTed rows would block)
    extra = Person.objects.create(association=world.association, display_name="Eve")
    r = alice.post(reverse("admin:people_person_changelist"),
                   {"action": "delete_selected", "_selected_action": [extra.pk, other_world.person.pk], "post": "yes"})
    assert r.status_code in (200, 403)
    assert Person.objects.filter(pk__in=[extra.pk, other_world.person.pk]).count() == 2
    r = alice.post(reverse("admin:people_person_changelist"),
                   {"action": "delete_selected", "_selected_action": [extra.pk], "post": "yes"})
    assert r.status_code == 302 and not Person.objects.filter(pk=extra.pk).exists()


def test_she_acknowledges_only_alerts_of_associations_where_she_may(alice, world, other_world):
    mine, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency", gesture="double")
    theirs, _ = create_alert(other_world.device, client_id=uuid.uuid4(), kind="emergency", gesture="double")
    alice.post(reverse("admin:alerts_alert_changelist"),
               {"action": "acknowledge", "_selected_action": [mine.pk, theirs.pk]})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.state == Alert.State.ACKNOWLEDGED
    assert theirs.state == Alert.State.OPEN and not theirs.acknowledgements.exists()


def test_she_resends_invitations_only_where_she_may(alice, world, other_world):
    Contact.objects.update(consent=Contact.Consent.PENDING)
    mine, theirs = world.contacts[0], other_world.contacts[0]
    alice.post(reverse("admin:people_contact_changelist"),
               {"action": "send_invitation", "_selected_action": [mine.pk, theirs.pk]})
    invited = set(Delivery.objects.filter(template="invitation").values_list("contact_id", flat=True))
    assert invited == {mine.pk}


def test_a_forged_post_cannot_attach_another_associations_person_to_her_device(alice, world, other_world):
    url = reverse("admin:devices_device_change", args=[world.device.pk])
    r = alice.post(url, device_form(world.device, holder=other_world.person.pk))
    assert r.status_code == 200 and r.context["adminform"].form.errors["holder"]
    # nor move her device to the association where she only reads
    r = alice.post(url, device_form(world.device, association=other_world.association.pk))
    assert r.status_code == 200 and r.context["adminform"].form.errors["association"]
    # nor enrol a person there
    r = alice.post(reverse("admin:people_person_add"), person_form(world.person, association=other_world.association.pk))
    assert r.status_code == 200 and r.context["adminform"].form.errors["association"]
    world.device.refresh_from_db()
    assert world.device.holder == world.person and world.device.association == world.association
    assert world.device.credentials.filter(revoked_at__isnull=True).count() == 1  # the pairing is untouched
    assert Person.objects.filter(association=other_world.association).count() == 1


def test_even_where_she_may_edit_both_a_device_never_carries_a_person_of_another_association(alice, world, other_world):
    Membership.objects.filter(user=world.staff, association=other_world.association).update(role=WORKER)
    r = alice.post(reverse("admin:devices_device_change", args=[world.device.pk]),
                   device_form(world.device, holder=other_world.person.pk))
    assert r.status_code == 200 and r.context["adminform"].form.errors["holder"]
    world.device.refresh_from_db()
    assert world.device.holder == world.person
    # nor is she moved to another association while she holds a device of this one
    r = alice.post(reverse("admin:people_person_change", args=[world.person.pk]),
                   person_form(world.person, association=other_world.association.pk))
    assert r.status_code == 200 and r.context["adminform"].form.errors["association"]
    world.person.refresh_from_db()
    assert world.person.association == world.association


def test_the_choices_list_only_associations_where_she_may_edit(alice, world, other_world):
    form = alice.get(reverse("admin:devices_device_change", args=[world.device.pk])).context["adminform"].form
    assert list(form.fields["holder"].queryset) == [world.person]
    assert list(form.fields["association"].queryset) == [world.association]
    form = alice.get(reverse("admin:people_person_add")).context["adminform"].form
    assert list(form.fields["association"].queryset) == [world.association]
    # as a worker in Oise, Oise's people and the association become choices
    Membership.objects.filter(user=world.staff, association=other_world.association).update(role=WORKER)
    form = alice.get(reverse("admin:people_person_add")).context["adminform"].form
    assert set(form.fields["association"].queryset) == {world.association, other_world.association}


def test_evidence_follows_her_role_in_the_cases_association(alice, world, other_world):
    mine, theirs = make_case(world), make_case(other_world)
    for action in ("hold", "retain"):
        with pytest.raises(evidence.EvidenceError) as refused:
            evidence.STATE_CHANGES[action](world.staff, theirs.reference, "enquête", "PV 1")
        assert refused.value.code == "forbidden"
    r = alice.post(reverse("admin:evidence_case_access", args=[theirs.pk]), {"action": "retain", "reason": "x"})
    assert r.status_code == 200 and "administrat" in r.content.decode()
    assert not CustodyRecord.objects.filter(case=theirs).exists()
    theirs.refresh_from_db()
    assert theirs.state == Case.State.SEALED
    evidence.retain(world.staff, mine.reference, "conservation", "")
    mine.refresh_from_db()
    assert mine.state == Case.State.RETAINED


@pytest.mark.parametrize(("role", "sent"), [(VIEWER, False), (WORKER, True), (REFERENT, True), (ADMIN, True)])
def test_read_only_members_cannot_resend_invitations(world, role, sent):
    Membership.objects.filter(user=world.staff).update(role=role)
    contact = world.contacts[0]
    Contact.objects.filter(pk=contact.pk).update(consent=Contact.Consent.PENDING)
    staff = staff_client(world.staff)
    staff.post(reverse("admin:people_contact_changelist"), {"action": "send_invitation", "_selected_action": [contact.pk]})
    assert Delivery.objects.filter(contact=contact, template="invitation").exists() is sent
    listing = staff.get(reverse("admin:people_contact_changelist")).content.decode()
    assert ('value="send_invitation"' in listing) is sent

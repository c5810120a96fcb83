"""The person's file: enrol in one form, codes set and never shown back, contacts with
their consent and a new invitation, devices, alerts and notes; every view and change is
in the audit log, which only administrators read."""

from __future__ import annotations

import pytest
from django.urls import reverse

from balise.associations.models import Membership
from balise.console.models import AuditEntry, Protection
from balise.dispatch.models import Delivery
from balise.people.models import Person
from tests.contacts.helpers import raise_alert
from tests.personas import CANCEL_PIN, DURESS_PIN, staff_client

pytestmark = pytest.mark.django_db


def test_the_file_shows_her_contacts_devices_and_alerts_and_is_audited(world):
    world.device.battery_percent = 12
    world.device.save()
    alert = raise_alert(world, "alarm")
    staff = staff_client(world.staff)
    html = staff.get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert all(c.name in html for c in world.contacts)
    assert world.device.hardware_id in html and "12 %" in html
    assert reverse("console:alert", args=[alert.pk]) in html
    assert CANCEL_PIN not in html and DURESS_PIN not in html and world.person.cancel_pin_hash not in html
    entry = AuditEntry.objects.get(action=AuditEntry.Action.VIEW_PERSON)
    assert entry.user == world.staff and entry.person == world.person


def test_another_association_cannot_open_or_change_her_file(world, other_world):
    stranger = staff_client(other_world.staff)
    assert stranger.get(reverse("console:person", args=[world.person.pk])).status_code == 404
    assert stranger.post(reverse("console:person_pins", args=[world.person.pk]),
                         {"cancel_pin": "1111", "duress_pin": "2222"}).status_code == 404
    assert world.person.match_pin("1111") is None


def test_codes_are_set_checked_and_never_shown_back(world):
    staff = staff_client(world.staff)
    url = reverse("console:person_pins", args=[world.person.pk])
    same = staff.post(url, {"cancel_pin": "5555", "duress_pin": "5555"})
    assert same.status_code == 400 and "5555" not in same.content.decode()
    assert staff.post(url, {"cancel_pin": "12", "duress_pin": "9999"}).status_code == 400
    assert staff.post(url, {"cancel_pin": "8642", "duress_pin": "9753"}).status_code == 302
    person = Person.objects.get(pk=world.person.pk)
    assert person.match_pin("8642") == "cancel" and person.match_pin("9753") == "duress"
    assert person.match_pin(CANCEL_PIN) is None
    html = staff.get(reverse("console:person", args=[person.pk])).content.decode()
    assert "8642" not in html and "9753" not in html
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SET_PINS, person=person).exists()


def test_enrol_a_person_in_one_form(world):
    staff = staff_client(world.staff)
    form = {"association": world.association.pk, "display_name": "Dominique", "language": "fr",
            "cancel_pin": "2580", "duress_pin": "0852", "starts_on": "2026-12-01", "ends_on": "2027-06-01",
            "contact_name": "Lou", "contact_phone": "06 12 34 56 99"}
    bad = staff.post(reverse("console:enrol"), dict(form, contact_phone="12"))
    assert bad.status_code == 400 and not Person.objects.filter(display_name="Dominique").exists()
    response = staff.post(reverse("console:enrol"), form)
    person = Person.objects.get(display_name="Dominique")
    assert response["Location"] == reverse("console:person", args=[person.pk])
    assert person.match_pin("2580") == "cancel"
    assert Protection.objects.get(person=person).ends_on.isoformat() == "2027-06-01"
    contact = person.contacts.get()
    assert contact.phone == "+33612345699"
    assert Delivery.objects.filter(contact=contact, template="invitation").exists()


def test_resend_an_invitation(world):
    contact = world.contacts[0]
    contact.consent = "pending"
    contact.save()
    before = Delivery.objects.filter(contact=contact).count()
    staff = staff_client(world.staff)
    staff.post(reverse("console:contact_invite", args=[world.person.pk, contact.pk]))
    assert Delivery.objects.filter(contact=contact).count() == before + 1


def test_a_read_only_member_reads_the_file_but_changes_nothing(world):
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.VIEWER)
    viewer = staff_client(world.staff)
    html = viewer.get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert world.person.display_name in html and 'id="pins"' not in html
    assert viewer.post(reverse("console:person_note", args=[world.person.pk]), {"text": "x"}).status_code == 403
    assert viewer.get(reverse("console:enrol")).status_code == 403
    assert viewer.get(reverse("console:audit")).status_code == 403
    assert reverse("console:audit") not in html  # (not offered in her menu either)


def test_administrators_read_the_audit_log_of_their_association(world, other_world):
    staff_client(world.staff).get(reverse("console:person", args=[world.person.pk]))
    staff_client(other_world.staff).get(reverse("console:person", args=[other_world.person.pk]))
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.ADMIN)
    html = staff_client(world.staff).get(reverse("console:audit")).content.decode()
    assert world.staff.username in html and other_world.staff.username not in html
    assert f'href="{reverse("console:audit")}"' in html  # in an administrator's menu


def test_the_audit_log_says_in_words_what_changed(world):
    from balise.console import actions as console_actions

    Membership.objects.filter(user=world.staff).update(role=Membership.Role.ADMIN)
    console_actions.update_person(world.person, world.staff, display_name="Camille R.", language="en")
    html = staff_client(world.staff).get(reverse("console:audit")).content.decode()
    assert "son nom, sa langue" in html and "display_name" not in html


def _protection_form(staff, person, language, **dates):
    return staff.post(reverse("console:person_edit", args=[person.pk]),
                      {"display_name": person.display_name, "language": person.language, **dates},
                      HTTP_ACCEPT_LANGUAGE=language)


@pytest.mark.parametrize("language, shown, pattern, typed", [
    ("fr", "01/03/2026", "jj/mm/aaaa", "15/04/2026"),
    ("en", "03/01/2026", "mm/dd/yyyy", "04/15/2026"),
])
def test_protection_dates_are_shown_and_typed_as_her_language_writes_them(world, language, shown, pattern, typed):
    import datetime

    Protection.objects.create(person=world.person, starts_on=datetime.date(2026, 3, 1))
    staff = staff_client(world.staff)
    html = staff.get(reverse("console:person", args=[world.person.pk]), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    field = html.split('id="id_starts_on"')[0].rsplit("<input", 1)[1] + html.split('id="id_starts_on"')[1].split(">")[0]
    assert 'type="text"' in field and f'value="{shown}"' in field and f'placeholder="{pattern}"' in field
    assert _protection_form(staff, world.person, language, starts_on=shown, ends_on=typed).status_code == 302
    protection = Protection.objects.get(person=world.person)
    assert (protection.starts_on, protection.ends_on) == (datetime.date(2026, 3, 1), datetime.date(2026, 4, 15))
    # ISO 8601 (a date pasted from elsewhere) is understood in both languages.
    assert _protection_form(staff, world.person, language, starts_on="2026-03-02").status_code == 302
    assert Protection.objects.get(person=world.person).starts_on == datetime.date(2026, 3, 2)


@pytest.mark.parametrize("language, bad, message", [
    ("fr", "31/02/2026", "Saisissez la date sous la forme jj/mm/aaaa."),
    ("fr", "04/15/2026", "Saisissez la date sous la forme jj/mm/aaaa."),  # month first: not the French way
    ("en", "15/04/2026", "Type the date as mm/dd/yyyy."),
    ("en", "soon", "Type the date as mm/dd/yyyy."),
])
def test_a_date_that_does_not_parse_is_a_form_error(world, language, bad, message):
    staff = staff_client(world.staff)
    response = _protection_form(staff, world.person, language, ends_on=bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and f'value="{bad}"' in html
    assert not Protection.objects.filter(person=world.person, ends_on__isnull=False).exists()
    enrol = staff.post(reverse("console:enrol"), {"starts_on": bad}, HTTP_ACCEPT_LANGUAGE=language)
    assert enrol.status_code == 400 and message in enrol.content.decode()


def test_her_own_number_is_never_shown_in_full_on_her_file(world):
    """The reminders' number is write-only: its last two digits in the summary and as
    the field's placeholder; a new number replaces it, empty keeps it, "remove" clears it."""
    from balise.supervision.models import PeriodicTest

    PeriodicTest.objects.create(person=world.person, phone="+33611223310", period_days=15)
    staff = staff_client(world.staff)
    url = reverse("console:person", args=[world.person.pk])
    html = staff.get(url).content.decode()
    assert "se terminant par 10" in html and "•• •• •• •• 10" in html
    assert "+33611223310" not in html and "0611223310" not in html and "11223310" not in html
    tests_url = reverse("console:person_tests", args=[world.person.pk])
    assert staff.post(tests_url, {"period_days": "20", "phone": ""}).status_code == 302
    assert PeriodicTest.objects.get(person=world.person).phone == "+33611223310"
    assert staff.post(tests_url, {"period_days": "20", "phone": "06 99 88 77 66"}).status_code == 302
    assert PeriodicTest.objects.get(person=world.person).phone == "+33699887766"
    assert "99887766" not in staff.get(url).content.decode()
    assert staff.post(tests_url, {"period_days": "20", "phone": "", "remove_phone": "on"}).status_code == 302
    assert PeriodicTest.objects.get(person=world.person).phone == ""
    assert "remove_phone" not in staff.get(url).content.decode()  # nothing to remove

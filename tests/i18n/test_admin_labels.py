"""The back-office that remains for superusers speaks French (and English) too: every
model and field has a translated name, every choice a translated label, and every row
says what it is ("Camille", "on my way (SMS reply, …)"), never "Acknowledgement object
(3)", never a column headed with a field's internal name ("Client id", "Epoch", "At")."""

from __future__ import annotations

import html
import re
import uuid
from datetime import date

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.functional import Promise

from balise.alerts.models import Acknowledgement, Alert, AlertEvent
from balise.dispatch.models import Delivery
from balise.evidence.models import CustodyRecord
from balise.integrations.flic.models import CheckIn, FlicButton, FlicSettings
from balise.devices.models import Device
from balise.programmes.models import FunderAccess, Programme
from tests.personas import make_case, staff_client

# Field names whose English auto-generated label is also the right French word.
SAME_IN_FRENCH = {"association", "associations", "signature", "latitude", "longitude", "programme", "note", "action",
                  "session", "segments", "audio"}


def project_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if m.__module__.startswith("balise.")]


def own_fields(model) -> list:
    """The fields declared on MODEL (not the automatic id, nor the reverse relations)."""
    return [f for f in model._meta.get_fields() if not f.auto_created]


def auto_label(field) -> str:
    """What Django would show had the field no verbose_name."""
    return field.name.replace("_", " ")


def test_every_model_field_and_choice_has_a_translated_name():
    untranslated = []
    for model in project_models():
        opts = model._meta
        for what, value in (("verbose_name", opts.verbose_name), ("verbose_name_plural", opts.verbose_name_plural)):
            if not isinstance(value, Promise):
                untranslated.append(f"{opts.label}.{what}")
        for field in own_fields(model):
            if not isinstance(field.verbose_name, Promise):
                untranslated.append(f"{opts.label}.{field.name}")
            for _value, label in field.flatchoices or ():
                if not isinstance(label, Promise):
                    untranslated.append(f"{opts.label}.{field.name}: {label}")
    assert untranslated == []


def test_every_model_says_what_a_row_is():
    assert [m._meta.label for m in project_models() if m.__str__ is models.Model.__str__] == []


def test_no_french_label_is_the_internal_name_of_its_field():
    with translation.override("fr"):
        same = [f"{m._meta.label}.{f.name}" for m in project_models() for f in own_fields(m)
                if str(f.verbose_name) == auto_label(f) and f.name not in SAME_IN_FRENCH]
        untranslated_models = [m._meta.label for m in project_models()
                               if str(m._meta.verbose_name) == m.__name__.lower()
                               and m.__name__.lower() not in SAME_IN_FRENCH]
    assert same == [] and untranslated_models == []


def test_english_labels_are_complete_too():
    with translation.override("en"):
        assert str(Alert._meta.get_field("epoch").verbose_name) == "changes of handling (counter)"
        assert str(Acknowledgement._meta.get_field("at").verbose_name) == "time of the answer"
    with translation.override("fr"):
        assert str(Alert._meta.get_field("epoch").verbose_name) == "changements de prise en charge (compteur)"
        assert str(Acknowledgement._meta.get_field("at").verbose_name) == "heure de la réponse"


# --- the pages themselves, as a superuser reading French --------------------------------------------------


@pytest.fixture
def rows(world):
    """One row of every model registered in the back-office, and of every inline."""
    alert = Alert.objects.create(client_id=uuid.uuid4(), device=world.device, person=world.person,
                                 association=world.association, kind="emergency")
    contact = world.contacts[0]
    Acknowledgement.objects.create(alert=alert, contact=contact, channel=Acknowledgement.Channel.SMS,
                                   answer=Acknowledgement.Answer.ON_MY_WAY)
    AlertEvent.objects.create(alert=alert, kind="delivery_sent", data={})
    Delivery.objects.create(contact=contact, recipient=contact.phone, channel="sms",
                            purpose=Delivery.Purpose.INVITATION, template="invitation", text="Bonjour",
                            state=Delivery.State.SENT, carrier_state="delivered")
    case = make_case(world)
    CustodyRecord.objects.create(case=case, index=0, action="export", actor_label="alice", reason="réquisition",
                                 data=b"{}", sha256="0" * 64, signature=b"")
    button = Device.objects.create(association=world.association, kind=Device.Kind.FLIC, hardware_id="BC44-B06243")
    FlicButton.objects.create(device=button)
    FlicSettings.objects.create(association=world.association)
    CheckIn.objects.create(person=world.person, device=button, due_at=timezone.now())
    programme = Programme.objects.create(name="Région Sud", slug="sud", funder_name="Région", funder_kind="region",
                                         starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31))
    funder = get_user_model().objects.create_user("financeur", password="x")
    FunderAccess.objects.create(user=funder, programme=programme)
    return {"alert": alert, "case": case}


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", password="correct horse battery")


def labels(page: str) -> list[str]:
    """The texts of the form labels and column headers of an admin page."""
    found = re.findall(r"<label[^>]*>(.*?)</label>", page, re.S)
    found += re.findall(r'<th[^>]*class="[^"]*column-[^"]*"[^>]*>(.*?)</th>', page, re.S)
    found += re.findall(r"<th[^>]*>(.*?)</th>", page, re.S)
    texts = [html.unescape(re.sub(r"<[^>]+>", "", t)).strip().rstrip(":").strip() for t in found]
    return [t for t in texts if t]


def english_forms(model) -> set[str]:
    """The labels Django would have made up from MODEL's field names (and its inlines')."""
    forms = set()
    inlines = [i.model for i in admin.site._registry[model].inlines]
    for m in [model, *inlines]:
        for f in own_fields(m):
            if f.name not in SAME_IN_FRENCH:
                forms |= {auto_label(f), auto_label(f).capitalize(), auto_label(f).upper()}
    return forms


def registered_models() -> list[type[models.Model]]:
    return [m for m in admin.site._registry if m.__module__.startswith("balise.")]


def test_every_registered_page_reads_french(rows, superuser, world):
    client = staff_client(superuser)
    assert len(registered_models()) >= 10
    for model in registered_models():
        opts = model._meta
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"no row of {opts.label} to look at"
        for url in (reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])):
            response = client.get(url, HTTP_ACCEPT_LANGUAGE="fr")
            assert response.status_code == 200, url
            page = html.unescape(response.content.decode())
            assert 'lang="fr"' in page, url
            assert "object (" not in page, url
            internal = sorted(set(labels(page)) & english_forms(model))
            assert internal == [], f"{url}: {internal}"


def test_the_alert_page_names_its_answers_in_french(rows, superuser):
    client = staff_client(superuser)
    page = html.unescape(client.get(reverse("admin:alerts_alert_change", args=[rows["alert"].pk]),
                                    HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    shown = labels(page)
    assert {"Heure de la réponse", "Canal", "Réponse"} <= set(shown)
    assert "en route (réponse par SMS, " in page  # the answer itself, not "Acknowledgement object (1)"
    assert "Acknowledgement" not in page and "Client id" not in page and "Epoch" not in page
    # Read-only: no "Save" button on an alert.
    assert 'name="_save"' not in page and 'name="_continue"' not in page


def test_the_deletion_page_lists_rows_by_what_they_are(rows, superuser, world):
    """Deleting a person lists every row that hangs on her: each by its name or time."""
    client = staff_client(superuser)
    response = client.get(reverse("admin:people_person_delete", args=[world.person.pk]), HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "object (" not in page
    assert "Camille" in page


def test_rows_say_what_they_are_in_french(rows, world):
    ack = Acknowledgement.objects.get()
    event = AlertEvent.objects.get()
    delivery = Delivery.objects.get()
    with translation.override("fr"):
        assert str(ack).startswith("en route (réponse par SMS, ")
        assert "delivery_sent" not in str(event) and "object" not in str(event)
        assert str(delivery).startswith("invitation par SMS à Proche 1, ") and str(delivery).endswith(" : envoyé")
        assert str(timezone.now().year) in str(event)
    with translation.override("en"):
        assert str(delivery).startswith("invitation by SMS to Proche 1, ") and str(delivery).endswith(": sent")

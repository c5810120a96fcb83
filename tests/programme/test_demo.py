"""The demo holds a six-month programme of fictitious activity: its report has figures."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse
from django.utils import timezone

from balise.demo import DEMO_FUNDER, DEMO_PROGRAMME, create_demo
from balise.people.models import Person
from balise.programmes.models import Programme
from balise.reports import service
from balise.stock.models import StockItem
from balise.supervision.checks import run_checks
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def test_the_demo_programme_is_six_months_of_fictitious_activity(django_user_model):
    create_demo()
    programme = Programme.objects.get(slug=DEMO_PROGRAMME)
    assert (programme.ends_on - programme.starts_on).days in range(180, 185)
    assert programme.ends_on < date.today() and programme.associations.count() == 3
    # only the console demo's low-battery button and Sacha's microphone: the fiction is quiet
    assert run_checks(timezone.now())[0] == 2
    assert Person.objects.filter(display_name__startswith="Fictive").count() == 120
    for person in Person.objects.filter(display_name__startswith="Fictive")[:20]:
        person.full_clean()
        for contact in person.contacts.all():
            contact.full_clean()
    assert StockItem.objects.filter(programme=programme).count() >= 120
    [report] = service.build([programme])
    kinds = report.table("kinds")
    assert all(kinds.cells[(k, "all")] for k in ("prevention", "emergency", "alarm"))
    assert report.timing["all"].contact_median.endswith("min")
    create_demo()  # (made once)
    assert Person.objects.filter(display_name__startswith="Fictive").count() == 120
    funder = django_user_model.objects.get(username=DEMO_FUNDER)
    html = staff_client(funder, second_factor=False).get(reverse("reports:report")).content.decode()
    assert "Expérimentation fictive" in html and "Fictive" not in html.replace("Expérimentation fictive", "")

"""A funder reads only the aggregates of her programme: every console URL either refuses
her or shows no name, phone number, position or recording."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from balise.stock import actions as stock
from tests.contacts.helpers import raise_alert
from tests.personas import staff_client
from tests.programme.helpers import busy_world, funder, programme

pytestmark = pytest.mark.django_db


def _console_routes():
    """(route, names of its arguments) of every URL under /console/."""
    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)
    return [r for r in walk(get_resolver().url_patterns, "/") if r.startswith("/console/")]


def _fill(route: str, ids: dict[str, int]) -> str:
    return re.sub(r"<(?:int:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


def test_every_console_url_refuses_a_funder_or_shows_no_personal_data(world, other_world):
    busy = busy_world("nantes", alerts=12)
    p = programme(busy, world)
    alert = raise_alert(world, "alarm")
    [item] = stock.receive(world.association.pk, stock.parse("BTN-42", "button")[0], world.staff)
    client = staff_client(funder(p), second_factor=False)
    secrets = {world.person.display_name, "Proche 1", world.device.hardware_id, "BTN-42", "station-nantes"}
    secrets |= {c.phone for c in world.contacts} | {c.phone.replace("+33", "0") for c in world.contacts}
    fix = alert.fixes.first()
    secrets |= {f"{fix.lat:.4f}", f"{fix.lon:.4f}", "segment", "opus"}
    ids = {"pk": world.person.pk, "contact_pk": world.contacts[0].pk}
    routes = _console_routes()
    assert len(routes) > 20
    shown = []
    for route in routes:
        if route == "/console/logout/":
            continue  # (would end her session)
        for pk in ({world.person.pk, alert.pk, world.device.pk, item.pk} if "<" in route else {0}):
            url = _fill(route, dict(ids, pk=pk))
            for method in (client.get, client.post):
                response = method(url)
                if response.status_code in (403, 404, 405) or route == "/console/login/":
                    continue
                if response.status_code == 302:
                    assert "/console/login" in response["Location"] or "/staff/" in response["Location"], url
                    continue
                assert response.status_code == 200, (url, response.status_code)
                body = response.content.decode("utf-8", "replace") if "pdf" not in response["Content-Type"] else ""
                leaked = [s for s in secrets if s in body]
                assert not leaked, (url, leaked)
                shown.append(url)
    # What she does see: the report of her programme, its PDF and CSV.
    assert {u.split("?")[0] for u in shown} >= {reverse("reports:report"), reverse("reports:csv"),
                                               reverse("reports:pdf")}
    assert "France Victimes nantes" in client.get(reverse("reports:report")).content.decode()


def test_a_funder_reads_only_her_own_programme(world, other_world):
    mine = programme(world, slug="mine")
    programme(other_world, slug="theirs")
    client = staff_client(funder(mine), second_factor=False)
    html = client.get(reverse("reports:report")).content.decode()
    assert world.association.name in html and other_world.association.name not in html
    assert client.get(reverse("reports:report"), {"programme": "theirs"}).status_code == 400
    assert client.get(reverse("reports:csv"), {"programme": "theirs"}).status_code == 400


def test_someone_with_no_role_reads_no_report(world):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody", password="correct horse battery")
    programme(world)
    assert staff_client(nobody, second_factor=False).get(reverse("reports:report")).status_code == 403


def test_a_funder_lands_on_her_report_after_logging_in(world):
    from django.test import Client

    p = programme(world)
    funder(p, "region")
    response = Client(HTTP_HOST="127.0.0.1").post(reverse("console:login"),
                                                  {"username": "region", "password": "correct horse battery"})
    assert response.status_code == 302 and response["Location"] == reverse("reports:report")

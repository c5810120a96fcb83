"""The on-call board in real headless Chromium at 1366x900, against `balise serve`
(uvicorn, its own dispatcher, the console provider), driven like real life: the device
API raises the alarm, a contact answers from her live page, the worker acts in the page."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone
from playwright.sync_api import expect

from balise.alerts.models import Alert
from balise.associations.models import Membership
from balise.console.models import Protection
from balise.demo import create_demo
from balise.devices.actions import authenticate_token
from balise.supervision.checks import run_checks
from balise_station.cli import main
from tests.contacts.test_browser import _fix, _link_for, _now, server  # noqa: F401 (the live server fixture)
from tests.personas import authenticator, make_world, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The README's screenshots are refreshed only on request (BALISE_SCREENSHOTS=docs/console):
# a test run leaves the tracked docs/console/*.png alone.
SCREENSHOTS = os.environ.get("BALISE_SCREENSHOTS", "")
PASSWORD = "correct horse battery"
VIEWPORT = {"width": 1366, "height": 900}


def _screenshot(page, name: str, **options) -> None:
    """Save PAGE as NAME in $BALISE_SCREENSHOTS (relative to the repository), if it is set."""
    if not SCREENSHOTS:
        return
    folder = Path(__file__).resolve().parents[2] / SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), **options)


def _login(browser, base: str, user, locale: str = "fr-FR", viewport: dict = VIEWPORT):
    """Log USER in through the form, in a browser speaking LOCALE. The server process
    knows only the real hashers: her password gets a (cheap) PBKDF2 hash it can check."""
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "console-tests", iterations=1000)
    user.save(update_fields=["password"])
    device = authenticator(user)  # her second factor, already set up
    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    page.goto(f"{base}/console/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#board, #second-factor-form", timeout=10_000)
    if "/staff/second-factor/" in page.url:  # administrators and referents: the code of her app
        page.fill("#id_token", totp_code(device.bin_key))
        page.click("input[type=submit]")
    try:
        page.wait_for_selector("#board", timeout=10_000)
    except Exception:
        raise AssertionError(page.url + "\n" + page.inner_text("body")[:2000])
    return page


def _raise(base: str, token: str, kind: str = "alarm") -> str:
    client_id = str(uuid.uuid4())
    r = httpx.post(f"{base}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}, timeout=10, json={
        "client_id": client_id, "kind": kind, "gesture": "long", "triggered_at": _now(),
        "fixes": [_fix(45.7578, 4.8320, 35), _fix(45.7590, 4.8335, 20)]})
    assert r.status_code == 201, r.text
    return client_id


def test_a_worker_sees_a_new_alarm_takes_charge_follows_answers_and_closes(server, chromium, world):  # noqa: F811
    base, outbox = server
    page = _login(chromium, base, world.staff)
    expect(page.locator("#list")).to_contain_text("Aucune alerte en cours")
    # While nothing happens, each poll sends back the version it holds and gets an empty 304.
    with page.expect_response(lambda r: "/console/live/list" in r.url and r.status == 304, timeout=5_000):
        pass

    _raise(base, world.token)
    raised = time.monotonic()
    card = page.locator("#list [data-alert]")
    card.wait_for(timeout=2_000)  # a new alarm is on the board within 2 s, without reload
    seen_ms = (time.monotonic() - raised) * 1000
    expect(page.locator("#board")).to_have_attribute("data-new-alerts", "1")
    page.wait_for_function("document.title.indexOf('(1)') === 0", timeout=3_000)  # the title rings too
    assert "Camille" in card.inner_text()
    alert = Alert.objects.get()

    card.locator("a").click()
    page.wait_for_selector("#map.leaflet-container")
    page.locator("#map path.here").wait_for()  # her last position, drawn without tiles
    page.locator("#map path.trail").wait_for()  # and the trail
    expect(page.locator("#coords")).to_have_text("45.75900, 4.83350")
    rows = page.locator("#contacts tbody tr")
    expect(rows).to_have_count(len(world.contacts) + 1)  # her contacts and the association's line
    expect(page.locator("#contacts")).to_contain_text("Proche 5")
    page.click("#take")
    expect(page.locator("#status")).to_contain_text(world.staff.username)

    # A contact answers on her live page: the board shows it without reload.
    link = _link_for(outbox, world.contacts[1].phone)
    r = httpx.post(f"{link}/answer", data={"answer": "on_my_way"}, headers={"Accept": "application/json"})
    assert r.status_code == 200
    row = page.locator("#contacts tbody tr", has_text="Proche 2")
    expect(row.locator(".answer")).to_contain_text("en route", timeout=5_000)
    expect(page.locator("#timeline")).to_contain_text("Proche 2 : J'arrive")
    _screenshot(page, "alert.png", full_page=True)

    page.check("input[name=outcome][value=contacts]")
    page.fill("#close-note", "Proche 2 est arrivée, Camille est en sécurité.")
    page.click("#close")
    expect(page.locator("#status")).to_contain_text("gérée par ses proches", ignore_case=True)
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED and alert.outcome == "contacts"
    expect(page.locator("#list")).to_contain_text("Aucune alerte en cours")
    print(f"new alarm on the board {seen_ms:.0f} ms after the device API answered")


def test_a_read_only_member_cannot_act_and_another_association_sees_nothing(server, chromium, world):  # noqa: F811
    base, _outbox = server
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.VIEWER)
    other = make_world("oise")
    _raise(base, world.token, kind="emergency")
    alert = Alert.objects.get()

    viewer = _login(chromium, base, world.staff)
    viewer.locator("#list [data-alert]").wait_for()
    viewer.goto(f"{base}/console/alerts/{alert.pk}/")
    expect(viewer.locator("#contacts")).to_be_visible()
    assert viewer.locator("#take").count() == 0 and viewer.locator("#close").count() == 0
    csrf = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
    refused = viewer.request.post(f"{base}/console/alerts/{alert.pk}/take", headers={"X-CSRFToken": csrf})
    assert refused.status == 403

    stranger = _login(chromium, base, other.staff)
    expect(stranger.locator("#list")).to_contain_text("Aucune alerte en cours")
    assert stranger.goto(f"{base}/console/alerts/{alert.pk}/").status == 404
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN and alert.taken_by is None
    assert re.search(r"Camille", stranger.content()) is None


def test_the_demo_board_the_person_s_file_pairing_and_supervision(server, chromium, world, tmp_path):  # noqa: F811
    """The demo's history on the board, Dominique's file, a pairing code and the
    supervision list, as a worker sees them (the screenshots of docs/console/)."""
    base, _outbox = server
    create_demo()
    run_checks(timezone.now())  # her button's battery is low; Sacha's station's microphone is unusable
    user = get_user_model().objects.get(username="demo")
    page = _login(chromium, base, user)
    expect(page.locator("#list [data-alert]")).to_have_count(2)
    expect(page.locator("#supervision-list")).to_contain_text("batterie")
    alarm = Alert.objects.get(kind="alarm", person__display_name="Dominique")
    page.click(f"[data-alert='{alarm.pk}'] a")
    page.locator("#map path.trail").wait_for()
    _screenshot(page, "board.png")

    page.click("#live-body a.person")
    expect(page.locator("h1")).to_contain_text("Dominique")
    expect(page.locator("#devices")).to_contain_text("14 %")
    expect(page.locator("#contacts")).to_contain_text("invité, sans réponse")
    expect(page.locator("#tests")).to_contain_text("se terminant par 10")  # her test reminders' phone
    assert "12345610" not in page.content()  # and nowhere in full, not even in the form
    _screenshot(page, "person.png", full_page=True)

    page.locator("#devices form[action$='/pair'] button").first.click()
    code = page.inner_text("#pairing-code")
    assert re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}", code) and page.locator(".qr svg").count() == 1
    _screenshot(page, "pairing.png")
    assert main(["pair", code, "--server", base, "--token-file", str(tmp_path / "token")]) == 0  # as a station does
    assert authenticate_token((tmp_path / "token").read_text().strip()).hardware_id == "demo-button-dominique"

    page.goto(f"{base}/console/supervision/")
    expect(page.locator("#open")).to_contain_text("demo-button-dominique")
    expect(page.locator("#open")).to_contain_text("micro inutilisable")  # what Sacha's station says of itself
    _screenshot(page, "supervision.png")
    page.goto(f"{base}/console/audit/")
    expect(page.locator("#audit")).to_contain_text("a consulté le dossier")


@pytest.mark.parametrize("locale, shown, pattern, typed, bad, error", [
    ("fr-FR", "01/03/2026", "jj/mm/aaaa", "15/04/2026", "31/02/2026", "Saisissez la date sous la forme jj/mm/aaaa."),
    ("en-US", "03/01/2026", "mm/dd/yyyy", "04/15/2026", "15/04/2026", "Type the date as mm/dd/yyyy."),
])
def test_protection_dates_read_and_typed_the_way_her_language_writes_them(  # noqa: F811
        server, chromium, world, locale, shown, pattern, typed, bad, error):
    """Her protection dates in a French browser: jj/mm/aaaa, shown, typed and saved; in
    an English one, mm/dd/yyyy; a date that does not exist is a message beside the field."""
    base, _outbox = server
    Protection.objects.create(person=world.person, starts_on=date(2026, 3, 1))
    page = _login(chromium, base, world.staff, locale=locale)
    page.goto(f"{base}/console/people/{world.person.pk}/")
    starts, ends = page.locator("#id_starts_on"), page.locator("#id_ends_on")
    expect(starts).to_have_value(shown)
    expect(ends).to_have_attribute("placeholder", pattern)
    ends.fill(typed)
    page.locator("#details form[action$='/edit'] button[type=submit]").click()
    expect(page.locator("#details dl")).to_contain_text(typed)
    assert Protection.objects.get(person=world.person).ends_on == date(2026, 4, 15)

    page.locator("#id_ends_on").fill(bad)
    page.locator("#details form[action$='/edit'] button[type=submit]").click()
    expect(page.locator("#details .errorlist")).to_have_text(error)
    expect(page.locator("#id_ends_on")).to_have_value(bad)
    assert Protection.objects.get(person=world.person).ends_on == date(2026, 4, 15)


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_the_console_in_french_on_a_desk_and_on_a_phone(server, chromium, world, width, height):  # noqa: F811
    """The board, an alert, her file, supervision and a pairing code in French, at a desk's
    1280x800 and a phone's 390x844: nothing wider than the screen, nothing raw, the
    numbers to call back whole and written as they are dialled."""
    base, _outbox = server
    create_demo()
    run_checks(timezone.now())
    page = _login(chromium, base, get_user_model().objects.get(username="demo"), viewport={"width": width,
                                                                                         "height": height})
    alarm = Alert.objects.get(kind="alarm", person__display_name="Dominique")
    raw = re.compile(r"object \(\d+\)|\bNone\b|\{|%\(|\b(step|of|Call|Who|ending in)\b")

    def look(path: str):
        if path:
            page.goto(base + path)
        text = page.inner_text("body")
        assert not raw.search(text), raw.search(text)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, path  # no sideways scrolling

    look("/console/")
    look(f"/console/alerts/{alarm.pk}/")
    page.locator("#map path.trail").wait_for()
    expect(page.locator("#contacts")).to_contain_text("06 12 34 56 11")
    clipped = page.evaluate("""Array.from(document.querySelectorAll('#contacts a.tel')).filter(a => {
        const box = a.closest('.contacts').getBoundingClientRect(), r = a.getBoundingClientRect();
        return r.width === 0 || r.right > box.right + 0.5 || r.left < box.left - 0.5; }).length""")
    assert clipped == 0
    if width < 600:  # on a phone, the alert in view comes before the list
        assert page.locator("#live-body").bounding_box()["y"] < page.locator("#list").bounding_box()["y"]
    look(f"/console/people/{alarm.person_id}/")
    page.locator("#devices form[action$='/pair'] button").first.click()
    page.wait_for_selector("#pairing-code")
    look("")
    look("/console/supervision/")
    expect(page.locator("#cleared")).not_to_contain_text("» de n")

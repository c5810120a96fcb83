"""The contact pages on a phone at night (390×844, French), in real headless Chromium
against `balise serve`: the first screen answers first, the band names who answered
what, the position reads without tiles or JavaScript, cancel and duress say what
happened, the consent page names its sender, and axe-core finds no serious or critical
accessibility violation on any of them (light and dark)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.contacts.axe import PHONE, SCHEMES, axe_violations, focus_ring_contrast
from tests.contacts.test_browser import ARTIFACTS, _fix, _link_for, server  # noqa: F401 (fixture)
from tests.personas import CANCEL_PIN, DURESS_PIN

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def raise_alert(base: str, token: str, *, kind: str = "emergency", pressed_ago: timedelta = timedelta(0),
                lat: float = 45.7640, lon: float = 4.8420) -> tuple[httpx.Client, str]:
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    client_id = str(uuid.uuid4())
    pressed = (datetime.now(timezone.utc) - pressed_ago).isoformat()
    fix = dict(_fix(lat, lon, 20), recorded_at=pressed)
    r = api.post("/alerts", json={"client_id": client_id, "kind": kind, "gesture": "double",
                                  "triggered_at": pressed, "fixes": [fix]})
    assert r.status_code == 201, r.text
    return api, client_id


def cancel(client_id: str, pin: str) -> None:
    """Her PIN, typed on the device. (Through the test process: its PIN hashes are made
    with the tests' fast hasher, which the server does not know; the device API's answers
    to a cancel are compared byte for byte in test_duress.)"""
    from balise.alerts.actions import cancel_alert
    from balise.alerts.models import Alert

    cancel_alert(Alert.objects.get(client_id=client_id), pin)


def answer(link: str, what: str) -> None:
    r = httpx.post(f"{link}/answer", data={"answer": what}, headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text


def in_first_screen(page, selector: str) -> list[dict]:
    boxes = [page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())]
    assert boxes, selector
    return [b for b in boxes if b is None or b["y"] < 0 or b["y"] + b["height"] > 844 or b["x"] + b["width"] > 390]


def test_the_first_screen_answers_first_and_the_band_names_who_answered(server, chromium, world):  # noqa: F811
    from playwright.sync_api import expect

    base, outbox = server
    api, client_id = raise_alert(base, world.token, pressed_ago=timedelta(minutes=12))  # queued offline 12 min
    link = _link_for(outbox, world.contacts[0].phone)
    answer(_link_for(outbox, world.contacts[1].phone), "cannot_help")

    context = chromium.new_context(**PHONE)
    page = context.new_page()
    page.goto(link)
    assert page.inner_text("#headline") == "Camille est en grave danger"
    assert re.search(r"il y a 12\s+minutes", page.inner_text("#since"))  # the press, not the server receipt
    assert "Ne l'appelez pas" in page.inner_text("#dont-call")
    band = page.inner_text("#status")
    assert "Proche 2 ne peut pas aider" in band and "Personne d'autre n'a encore répondu" in band
    assert "Personne n'a encore répondu" not in band
    assert "tone-danger" in page.get_attribute("#page", "class")

    # Who, what, since when, the answers and the calls: all on the first screen, no scrolling.
    assert page.evaluate("window.scrollY") == 0
    assert in_first_screen(page, "#answer-form button") == []
    assert in_first_screen(page, ".todo .call") == []
    assert in_first_screen(page, "#status") == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "contact-first-screen-390x844.png"
    page.screenshot(path=str(shot))  # the viewport only: what she sees without scrolling
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (780, 1688)
    box = page.locator("button[value='on_my_way']").bounding_box()
    # The "I am on my way" button's green is in the screenshot, where the button is.
    pixel = image.getpixel((int((box["x"] + 8) * 2), int((box["y"] + box["height"] / 2) * 2)))
    assert pixel == (4, 120, 87), pixel

    # The map comes after, says that its tiles are unavailable, and takes no focus.
    expect(page.locator("#map-status")).to_contain_text("Fond de carte indisponible", timeout=10_000)
    assert "&nbsp;" not in page.inner_text("#map-status")  # its French no-break space is a character
    assert page.locator("#map").bounding_box()["y"] > page.locator("#answer-form").bounding_box()["y"]
    place = page.inner_text("#place")
    assert re.search(r"\d+(,\d)?\s+k?m (au |à l')[a-z-]+ du centre de Lyon", place), place
    assert re.search(r"Coordonnées\s:\s45.76400, 4.84200", page.inner_text("#fix"))
    for _ in range(25):
        page.keyboard.press("Tab")
        assert not page.evaluate("document.activeElement.closest('#map') !== null")
        for scheme in SCHEMES:  # and where it is shows, by day and at night
            page.emulate_media(color_scheme=scheme)
            assert focus_ring_contrast(page) >= 3, (scheme, page.evaluate("document.activeElement.outerHTML"))
    assert axe_violations(page, "live page, one contact cannot help") == []

    # "On my way" is not "police called": the band stays a warning for the others.
    answer(_link_for(outbox, world.contacts[2].phone), "on_my_way")
    expect(page.locator("#status")).to_contain_text("Proche 3 est en route", timeout=10_000)
    expect(page.locator("#page")).to_have_class(re.compile("tone-warn"))
    assert "Personne n'a encore dit avoir appelé la police" in page.inner_text("#status")
    answer(_link_for(outbox, world.contacts[3].phone), "called_police")
    expect(page.locator("#page")).to_have_class(re.compile("tone-calm"), timeout=10_000)
    assert "Proche 4 a appelé la police à" in page.inner_text("#status")
    assert in_first_screen(page, "#answer-form button") == [] and in_first_screen(page, ".todo .call") == []
    page.screenshot(path=str(ARTIFACTS / "contact-first-screen-answers-390x844.png"))

    # In English too (contact 5 reads English).
    english = context.new_page()
    english.goto(_link_for(outbox, world.contacts[4].phone))
    assert english.inner_text("#headline") == "Camille is in grave danger"
    assert "Do not call her" in english.inner_text("#dont-call")
    assert in_first_screen(english, "#answer-form button") == [] and in_first_screen(english, ".todo .call") == []
    english.close()

    # At night: the dark scheme (axe_violations checked it too).
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 18, 18)"
    page.screenshot(path=str(ARTIFACTS / "contact-page-dark-390x844.png"))
    # A favicon, at the address browsers try.
    assert httpx.get(f"{base}/favicon.ico", follow_redirects=True).status_code == 200
    context.close()


def test_the_position_card_works_without_javascript(server, chromium, world):  # noqa: F811
    base, outbox = server
    raise_alert(base, world.token, kind="prevention")
    link = _link_for(outbox, world.contacts[0].phone)
    context = chromium.new_context(**dict(PHONE, java_script_enabled=False))
    page = context.new_page()
    page.goto(link)
    card = page.inner_text("#fix")
    assert "45.76400, 4.84200" in card and "20 m" in card
    assert "du centre de Lyon" in card and "Position mise à jour pour la dernière fois à" in card
    assert page.get_attribute("#map-geo", "href").startswith("geo:45.764000,4.842000")
    assert page.get_attribute("#map-osm", "href").startswith("https://www.openstreetmap.org/?mlat=45.764000")
    assert "La carte a besoin de JavaScript" in page.inner_text("#map-status")
    # The answer buttons are a plain form.
    page.click("button[value='on_my_way']")
    assert "answered=1" in page.url
    assert "Proche 1 est en route" in page.inner_text("#answers")
    assert page.get_attribute("button[value='on_my_way']", "aria-pressed") == "true"
    context.close()


def test_cancel_says_who_and_when_and_tells_whoever_called_the_police(server, chromium, world):  # noqa: F811
    from playwright.sync_api import expect

    base, outbox = server
    api, client_id = raise_alert(base, world.token)
    link = _link_for(outbox, world.contacts[0].phone)
    other = _link_for(outbox, world.contacts[1].phone)
    context = chromium.new_context(**PHONE)
    page, page2 = context.new_page(), context.new_page()
    page.goto(link)
    page2.goto(other)
    page.tap("button[value='called_police']")
    page.locator("#answers .mine").wait_for(timeout=10_000)
    cancel(client_id, CANCEL_PIN)
    expect(page.locator("#headline")).to_have_text("Camille a annulé son alerte", timeout=10_000)
    assert re.search(r"avec son code à \d\d:\d\d", page.inner_text("#status"))
    assert "tone-closed" in page.get_attribute("#page", "class")
    expect(page.locator("#police-line")).to_contain_text("rappelez-la (17)")
    assert page.is_hidden("#todo") and page.is_hidden("#answer-section") and page.is_hidden("#dont-call")
    # The contact who had not called the police has no such line.
    expect(page2.locator("#headline")).to_have_text("Camille a annulé son alerte", timeout=10_000)
    assert page2.is_hidden("#police-line")
    assert axe_violations(page, "cancelled alert, after calling the police") == []
    page.screenshot(path=str(ARTIFACTS / "contact-cancelled-390x844.png"))
    context.close()


def test_duress_keeps_her_visible_and_the_device_sees_a_cancel(server, chromium, world):  # noqa: F811
    from playwright.sync_api import expect

    base, outbox = server
    # A real cancel first, for what the device sees of it.
    api, cancelled_id = raise_alert(base, world.token)
    answer(_link_for(outbox, world.contacts[1].phone), "on_my_way")
    cancel(cancelled_id, CANCEL_PIN)
    after_cancel = api.post(f"/alerts/{cancelled_id}/fixes", json={"fixes": [_fix(45.77, 4.85, 10)]})
    status_cancel = api.get(f"/alerts/{cancelled_id}")

    outbox.write_text("")
    api, client_id = raise_alert(base, world.token)
    link = _link_for(outbox, world.contacts[0].phone)
    answer(_link_for(outbox, world.contacts[1].phone), "on_my_way")
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    page.goto(link)
    page.tap("button[value='called_police']")
    page.locator("#answers .mine").wait_for(timeout=10_000)

    cancel(client_id, DURESS_PIN)
    expect(page.locator("#status")).to_contain_text("sous la contrainte", timeout=10_000)
    # His earlier answer stays, and he is asked to say again what he does.
    expect(page.locator("#confirm-text")).to_contain_text("Redites ce que vous faites")
    assert "avant qu'elle soit forcée d'annuler" in page.inner_text("#answers")
    assert page.get_attribute("button[value='called_police']", "aria-pressed") == "false"
    assert page.is_visible("#todo") and "Ne l'appelez pas" in page.inner_text("#status")
    assert in_first_screen(page, "#answer-form button") == [] and in_first_screen(page, ".todo .call") == []

    # The station keeps sending fixes: the server keeps them and the page shows them,
    # while the device gets exactly what a cancelled alert gets.
    under_duress = api.post(f"/alerts/{client_id}/fixes", json={"fixes": [_fix(45.7700, 4.8500, 10)]})
    expect(page.locator("#coords")).to_have_text("45.77000, 4.85000", timeout=10_000)
    assert "Position mise à jour pour la dernière fois à" in page.inner_text("#duress-text")
    assert (under_duress.status_code, under_duress.content) == (after_cancel.status_code, after_cancel.content)
    status = api.get(f"/alerts/{client_id}")

    def masked(response, cid):
        body = json.loads(response.content)
        return response.content.replace(cid.encode(), b"C").replace(
            json.dumps(body["created_at"]).encode(), b"T").replace(f'"id": {body["id"]},'.encode(), b'"id": 0,')

    assert masked(status, client_id) == masked(status_cancel, cancelled_id)
    assert axe_violations(page, "alert cancelled under duress") == []
    page.screenshot(path=str(ARTIFACTS / "contact-duress-390x844.png"))

    # He confirms: recorded again, the band names him.
    page.tap("button[value='called_police']")
    expect(page.locator("#confirm-text")).to_be_hidden(timeout=10_000)
    assert page.get_attribute("button[value='called_police']", "aria-pressed") == "true"
    context.close()


def test_the_consent_page_names_its_sender_and_what_declining_means(server, chromium, world):  # noqa: F811
    from balise.tracking.tokens import make_consent_token

    base, _outbox = server
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{base}/c/{make_consent_token(world.contacts[0])}")
    sender = page.inner_text("#sender")
    assert world.association.name in sender and "04 72 00 00 00" in sender
    assert "vous parviendront quand même" in page.inner_text("#refuse-means")
    assert axe_violations(page, "consent form") == []
    page.goto(f"{base}/s/not-a-valid-link")
    assert axe_violations(page, "unknown link") == []
    context.close()

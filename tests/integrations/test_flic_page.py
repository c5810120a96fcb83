"""Her page, opened from the Flic app (?token=<JWT>) or from her private link: status,
contacts, her alert and who answered, a test alert, cancel with her PIN and with the
duress PIN, her prevention words, a check-in timer; in headless Chromium at 390x844
with JavaScript off."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone, translation

from balise.alerts.actions import acknowledge_alert, resolve_alert
from balise.alerts.models import Alert
from balise.console.timeline import describe_events
from balise.dispatch.messages import own_words_room, sms_parts, to_gsm7
from balise.integrations.flic import checkins
from balise.integrations.flic.models import CheckIn, FlicButton
from balise.providers.console import read_outbox
from balise.tracking.shortlinks import link_length
from tests.contacts.axe import PHONE, axe_violations
from tests.integrations.flic import claims, es256, page_behind, post, register, with_location
from tests.personas import CANCEL_PIN, DURESS_PIN, staff_client
from tests.spine.helpers import drain


def page_url(token: str) -> str:
    return f"/integrations/flic/page/?token={token}"


def webview_token() -> str:
    return es256(claims(None, battery="medium"))


def test_the_page_needs_a_valid_token(db, client, world):
    register(world)
    assert client.get("/integrations/flic/page/").status_code == 400
    assert client.get(page_url(es256(claims(None, exp_in=-300)))).status_code == 401
    assert client.get("/integrations/flic/p/flp_nothing/").status_code == 404


def test_the_page_shows_her_button_contacts_and_help_in_french(db, client, world):
    register(world)
    response = client.get(page_url(webview_token()))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<title>Mon espace</title>" in html
    assert FlicButton.objects.get().battery_status == "medium"  # from the webview token
    for contact in world.contacts:
        assert contact.name in html
    for number in ("tel:17", "tel:112", "sms:114", "tel:3919", f"tel:{world.association.on_call_number}"):
        assert number in html
    assert "Balise" not in html.split("<main>")[1]  # neutral: the page never names Balise
    # The location notice says how long (the association's retention, 90 days by default).
    assert "vos positions sont effacées 90 jours après" in html


def test_cancel_with_the_pin_and_with_the_duress_pin_look_the_same(db, client, world):
    register(world)
    url = page_url(webview_token())
    post(client, es256(claims("click")))
    alert = Alert.objects.get()
    wrong = client.post(url, {"action": "cancel", "cancel-pin": "0000"}).content.decode()
    assert Alert.objects.get().state == "open" and "id=\"alert\"" in wrong
    duress = client.post(url, {"action": "cancel", "cancel-pin": DURESS_PIN}).content.decode()
    alert.refresh_from_db()
    assert alert.duress and alert.state == "open"  # escalates to everyone at once
    # A press while it is open would join it: the association closes it first, and her
    # next press raises an alert of its own.
    resolve_alert(alert, staff=world.staff)
    post(client, es256(claims("double_click", pressed_at=timezone.now() + timedelta(seconds=1))))
    second = Alert.objects.exclude(pk=alert.pk).get()
    cancel = client.post(url, {"action": "cancel", "cancel-pin": CANCEL_PIN}).content.decode()
    second.refresh_from_db()
    assert second.state == "cancelled"

    def visible(html):
        # What differs is only the button's last press (the second alert's) and a form id.
        html = re.sub(r'<section id="status">.*?</section>', "", html, flags=re.S)
        return re.sub(r'name="client_id" value="[^"]+"', "", html)
    assert 'id="notice">Votre alerte est annulée.<' in duress
    assert visible(duress) == visible(cancel)


def test_the_private_link_opens_the_same_page(db, client, world):
    register(world)
    html = client.post(page_url(webview_token()), {"action": "private_link"}).content.decode()
    link = re.search(r'id="private-link" href="http://testserver(/integrations/flic/p/flp_[^"]+/)"', html).group(1)
    assert client.get(link).status_code == 200
    # A new link replaces the old one.
    client.post(link, {"action": "private_link"})
    assert client.get(link).status_code == 404


def test_her_prevention_words_go_in_the_sms_and_too_long_is_refused(transactional_db, client, world, console):
    register(world)
    url = page_url(webview_token())
    words = "Il est là, j'ai besoin d'un prétexte pour sortir"
    client.post(url, {"action": "prevention_text", "prevention_text": words})
    world.person.refresh_from_db()
    assert world.person.prevention_text == words
    too_long = client.post(url, {"action": "prevention_text", "prevention_text": "x" * 150 + "€" * 6})
    assert 'id="text-error"' in too_long.content.decode()
    world.person.refresh_from_db()
    assert world.person.prevention_text == words  # unchanged
    post(client, es256(claims("click", **with_location(45.76401, 4.83572))))
    drain(console)
    texts = [r["text"] for r in read_outbox(console.outbox_path) if r["channel"] == "sms"]
    assert len(texts) == 5
    # Her words, where she is (as much as one part holds), the link: one SMS part.
    assert all(to_gsm7(words) in t and sms_parts(t) == 1 and "45.76401, 4.83572" in page_behind(client, t)
               for t in texts), texts[0]


def test_her_words_are_held_to_what_one_sms_leaves(transactional_db, client, world, console):
    register(world)
    url = page_url(webview_token())
    with translation.override("fr"):
        room = own_words_room(world.person.display_name, link_length())
    assert 40 <= room < 160
    assert 'id="text-error"' in client.post(url, {"action": "prevention_text",
                                                   "prevention_text": "a" * (room + 1)}).content.decode()
    client.post(url, {"action": "prevention_text", "prevention_text": "a" * room})
    world.person.refresh_from_db()
    assert world.person.prevention_text == "a" * room
    post(client, es256(claims("click", **with_location(45.76401, 4.83572))))
    drain(console)
    texts = [r["text"] for r in read_outbox(console.outbox_path) if r["channel"] == "sms"]
    assert len(texts) == 5 and all("a" * room in t and sms_parts(t) == 1 for t in texts), texts[0]


def _at(moment):
    return lambda: moment


def test_a_check_in_not_confirmed_fires_a_prevention_alert_with_her_last_position(
        transactional_db, client, world, console, monkeypatch):
    button = register(world)
    post(client, es256(claims("click", **with_location(45.75, 4.85))))  # her last position
    Alert.objects.update(state="resolved")
    now = timezone.localtime()
    due = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    client.post(page_url(webview_token()), {"action": "checkin_start", "due_time": due.strftime("%H:%M")})
    checkin = CheckIn.objects.get()
    assert checkin.due_at == due and checkin.device_id == button.device_id
    monkeypatch.setattr(checkins, "clock", _at(due - timedelta(seconds=1)))
    console.tick()
    assert Alert.objects.filter(gesture="checkin").count() == 0
    monkeypatch.setattr(checkins, "clock", _at(due + timedelta(seconds=1)))
    console.tick()
    alert = Alert.objects.get(gesture="checkin")
    assert alert.kind == "prevention" and CheckIn.objects.get().state == "fired"
    drain(console)
    sms = [r for r in read_outbox(console.outbox_path) if r["alert_id"] == alert.pk and r["channel"] == "sms"]
    assert len(sms) == 5 and all("45.75000, 4.85000" in page_behind(client, r["text"]) for r in sms), sms[0]["text"]


def test_a_confirmed_check_in_never_fires(transactional_db, client, world, console, monkeypatch):
    register(world)
    url = page_url(webview_token())
    due = (timezone.localtime() + timedelta(hours=1)).replace(second=0, microsecond=0)
    client.post(url, {"action": "checkin_start", "due_time": due.strftime("%H:%M")})
    client.post(url, {"action": "checkin_extend", "minutes": "30"})
    assert CheckIn.objects.get().due_at == due + timedelta(minutes=30)
    assert "confirm-pin" in client.post(url, {"action": "checkin_confirm", "confirm-pin": "0000"}).content.decode()
    assert CheckIn.objects.get().state == "pending"
    client.post(url, {"action": "checkin_confirm", "confirm-pin": CANCEL_PIN})
    assert CheckIn.objects.get().state == "confirmed"
    monkeypatch.setattr(checkins, "clock", _at(due + timedelta(days=1)))
    console.tick()
    assert not Alert.objects.exists()


def test_confirming_a_check_in_with_the_duress_pin_raises_a_duress_alert(db, client, world):
    register(world)
    url = page_url(webview_token())
    client.post(url, {"action": "checkin_start", "due_time": "23:00"})
    html = client.post(url, {"action": "checkin_confirm", "confirm-pin": DURESS_PIN}).content.decode()
    assert CheckIn.objects.get().state == "confirmed"
    alert = Alert.objects.get()
    assert alert.duress and alert.state == "open"
    assert 'id="alert"' not in html  # she sees what she would after the real code


@pytest.mark.usefixtures("transactional_db")
def test_her_page_on_a_phone_without_javascript(live_server, chromium, world):
    register(world)
    context = chromium.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False,
                                   locale="fr-FR")
    page = context.new_page()
    url = live_server.url + page_url(webview_token())
    page.goto(url)
    assert page.title() == "Mon espace"
    assert page.locator("#battery").inner_text() == "moyenne"
    assert page.locator("#contacts li").count() == 5
    # A test alert.
    page.get_by_role("button", name="Envoyer une alerte de test").click()
    assert "Test envoyé" in page.locator("#notice").inner_text()
    assert Alert.objects.get().kind == "test"
    # An alert and who answered.
    Alert.objects.update(state="resolved")
    alert = Alert.objects.create(client_id="00000000-0000-0000-0000-000000000001", device=world.device,
                                 person=world.person, association=world.association, kind="emergency")
    acknowledge_alert(alert, channel="page", contact=world.contacts[0], answer="on_my_way")
    page.goto(url)
    assert "Proche 1 a vu votre alerte" in page.locator("#answers").inner_text()
    page.fill("#id_cancel-pin", DURESS_PIN)
    page.get_by_role("button", name="Annuler mon alerte").click()
    assert page.locator("#notice").inner_text() == "Votre alerte est annulée."
    assert Alert.objects.get(pk=alert.pk).duress
    # Her words, too long.
    page.fill("#id_prevention_text", "a" * 161)
    page.get_by_role("button", name="Enregistrer mon message").click()
    assert "161" in page.locator("#text-error").inner_text()
    # Everything fits the phone's width.
    width = page.locator("main").bounding_box()["width"]
    assert width <= 390
    for selector in ("#status button", "#words textarea", "#help a"):
        box = page.locator(selector).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    context.close()
    # A connection opened by this test's queries while the browser ran stays open
    # otherwise, and PostgreSQL's test database could not be dropped.
    connections.close_all()


@pytest.mark.usefixtures("transactional_db")
def test_her_page_is_accessible_in_every_state(live_server, chromium, client, world):
    """axe-core on her page as she reads it at night too: no alert, an alert answered,
    after the duress code (it reads as a cancel), a check-in timer on, a dead link."""
    from playwright.sync_api import expect

    register(world)
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    url = live_server.url + page_url(webview_token())
    page.goto(url)
    expect(page.locator("h1")).to_have_text("Mon espace")
    assert axe_violations(page, "her page") == []

    post(client, es256(claims("click")))
    acknowledge_alert(Alert.objects.get(), channel="page", contact=world.contacts[0], answer="on_my_way")
    page.goto(url)
    expect(page.locator("#answers")).to_contain_text("Proche 1 a vu votre alerte")
    assert axe_violations(page, "her page, alert answered") == []

    page.fill("#id_cancel-pin", DURESS_PIN)
    page.get_by_role("button", name="Annuler mon alerte").tap()
    expect(page.locator("#notice")).to_have_text("Votre alerte est annulée.")
    assert axe_violations(page, "her page, after the duress code") == []

    page.fill("#id_due_time", "23:30")
    page.get_by_role("button", name="Lancer le minuteur").tap()
    expect(page.locator("#checkin-due")).to_be_visible()
    assert axe_violations(page, "her page, check-in timer on") == []

    page.goto(live_server.url + "/integrations/flic/p/flp_nothing/")
    expect(page.locator("main p")).to_contain_text("Ce lien ne fonctionne plus")
    assert axe_violations(page, "her page, dead link") == []
    context.close()
    connections.close_all()  # as above: PostgreSQL's test database must be droppable


def test_a_failing_timer_source_never_stops_dispatch(db, world, console, monkeypatch):
    from balise.dispatch import extra_timers

    def broken(owner):
        raise RuntimeError("bug in another app's timers")

    monkeypatch.setattr(extra_timers, "_sources", [broken, checkins.run_due])
    button = register(world)
    checkins.start(button, timezone.now() - timedelta(seconds=1))
    console.tick()
    assert CheckIn.objects.get().state == "fired" and Alert.objects.filter(gesture="checkin").exists()


def _start(client, url, minutes_ahead: int = 60):
    due = (timezone.localtime() + timedelta(minutes=minutes_ahead)).replace(second=0, microsecond=0)
    client.post(url, {"action": "checkin_start", "due_time": due.strftime("%H:%M")})
    return due


def test_wrong_pins_on_a_check_in_are_limited_then_it_runs_to_its_end(
        transactional_db, client, world, console, monkeypatch, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 3
    register(world)
    url = page_url(webview_token())
    due = _start(client, url)
    for _ in range(3):
        html = client.post(url, {"action": "checkin_confirm", "confirm-pin": "0000"}).content.decode()
        assert "Code incorrect." in html
    assert CheckIn.objects.get().wrong_pins == 3
    # From the limit on, her real code is refused like any other, and the timer can no
    # longer be pushed back: it runs to its end.
    html = client.post(url, {"action": "checkin_confirm", "confirm-pin": CANCEL_PIN}).content.decode()
    assert "Code incorrect." in html and CheckIn.objects.get().state == "pending"
    html = client.post(url, {"action": "checkin_extend", "minutes": "60"}).content.decode()
    assert "Trop de codes incorrects" in html
    checkin = CheckIn.objects.get()
    assert (checkin.state, checkin.due_at, checkin.wrong_pins) == ("pending", due, 4)
    monkeypatch.setattr(checkins, "clock", _at(due + timedelta(seconds=1)))
    console.tick()
    alert = Alert.objects.get(gesture="checkin")
    assert CheckIn.objects.get().state == "fired"
    # The association sees the refusals on the alert's timeline.
    event = alert.events.get(kind="checkin_pin_refused")
    assert event.data == {"wrong_pins": 4, "locked": True}
    with translation.override("en"):
        line = describe_events(alert, [event])[0]
    assert line.text.startswith("4 wrong codes were typed to stop her check-in timer") and line.tone == "alarm"


def test_a_wrong_pin_below_the_limit_is_counted_and_her_code_still_stops_the_timer(db, client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 3
    register(world)
    url = page_url(webview_token())
    _start(client, url)
    client.post(url, {"action": "checkin_confirm", "confirm-pin": "0000"})
    client.post(url, {"action": "checkin_confirm", "confirm-pin": CANCEL_PIN})
    assert CheckIn.objects.values_list("state", "wrong_pins").get() == ("confirmed", 1)
    assert not Alert.objects.exists()


def test_the_duress_pin_after_the_limit_raises_the_alert_and_looks_like_a_wrong_pin(db, client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 2
    register(world)
    url = page_url(webview_token())
    _start(client, url)
    for _ in range(2):
        client.post(url, {"action": "checkin_confirm", "confirm-pin": "0000"})
    wrong = client.post(url, {"action": "checkin_confirm", "confirm-pin": "9999"}).content.decode()
    assert not Alert.objects.exists()
    duress = client.post(url, {"action": "checkin_confirm", "confirm-pin": DURESS_PIN}).content.decode()
    alert = Alert.objects.get()
    assert alert.duress and alert.state == "open"
    assert CheckIn.objects.get().state == "pending"  # it looks as it did

    def visible(html):
        return re.sub(r'name="client_id" value="[^"]+"', "", html)
    assert visible(duress) == visible(wrong)


def test_the_back_office_lists_her_timers_with_their_wrong_codes(db, client, world, other_world):
    register(world)
    url = page_url(webview_token())
    _start(client, url)
    client.post(url, {"action": "checkin_confirm", "confirm-pin": "0000"})
    staff = staff_client(world.staff)
    listing = staff.get("/admin/flic/checkin/")
    assert listing.status_code == 200
    assert re.search(r'class="field-wrong_pins">1<', listing.content.decode())
    # Scoped to her association.
    assert staff_client(other_world.staff).get("/admin/flic/checkin/").content.decode().count(
        'class="field-wrong_pins"') == 0


def test_starting_a_timer_while_one_runs_is_refused_and_never_stops_it(db, client, world):
    register(world)
    url = page_url(webview_token())
    due = _start(client, url)
    # A hand-made request: the page hides this form while a timer runs.
    html = client.post(url, {"action": "checkin_start", "due_time": "03:00"}).content.decode()
    assert "Un minuteur est déjà en cours" in html
    checkin = CheckIn.objects.get()
    assert (checkin.state, checkin.due_at) == ("pending", due)


def test_a_test_alert_reads_as_a_test_never_as_her_alert(db, client, world):
    register(world)
    url = page_url(webview_token())
    html = client.post(url, {"action": "test", "client_id": "5e1f3c5a-0d4c-4b8e-9a51-7c2d3e4f5a6b"}).content.decode()
    test = Alert.objects.get()
    assert test.kind == "test" and test.state == "open"
    for page in (html, client.get(url).content.decode()):
        assert 'id="alert"' not in page and "Vos proches continuent d'être appelés" not in page
        assert 'id="test-open"' in page and "cancel-pin" not in page
    # A real press while the test is open: her page shows the real alert, and her code
    # cancels that one, not the test.
    post(client, es256(claims("click")))
    real = Alert.objects.exclude(kind="test").get()
    assert 'id="alert"' in client.get(url).content.decode()
    client.post(url, {"action": "cancel", "cancel-pin": CANCEL_PIN})
    real.refresh_from_db()
    test.refresh_from_db()
    assert (real.state, test.state) == ("cancelled", "open")

"""A referent, in the browser: first login with her password leads her to set up an
authenticator (QR code and secret), she confirms with a code and is shown her recovery
codes once; she logs out, and the next login asks her for a code. Six wrong passwords
lock the account."""

from __future__ import annotations

from base64 import b32decode

import pytest

from tests.personas import totp_code

from .helpers import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, base, username, password=PASSWORD):
    page.goto(f"{base}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def test_a_referent_enrols_then_logs_in_with_a_code(live_server, chromium, world, tmp_path):
    page = chromium.new_page(locale="fr-FR", viewport={"width": 1024, "height": 900})
    log_in(page, live_server.url, world.staff.get_username())
    assert "/staff/second-factor/enrol/" in page.url
    assert "Votre rôle donne accès aux preuves" in page.text_content("#content")
    assert page.locator("#totp-qr svg").is_visible()
    page.screenshot(path=str(tmp_path / "enrol.png"))
    secret = page.text_content("#totp-secret").replace(" ", "")
    key = b32decode(secret + "=" * (-len(secret) % 8))

    page.fill("#id_token", totp_code(key))
    page.click("input[type=submit]")
    codes = page.locator("#recovery-codes code").all_text_contents()
    assert len(codes) == 10 and "Ils ne sont affichés que maintenant" in page.text_content("#content")
    page.click("#continue")
    assert page.url == f"{live_server.url}/admin/"
    assert "Camille" not in page.content() and page.locator("#content").is_visible()
    page.goto(f"{live_server.url}/admin/people/person/")
    assert "Camille" in page.text_content("#result_list")

    page.click("#logout-form button")
    log_in(page, live_server.url, world.staff.get_username())
    assert "/staff/second-factor/" in page.url
    page.goto(f"{live_server.url}/admin/people/person/")  # no way round it
    assert "/staff/second-factor/" in page.url
    page.fill("#id_token", totp_code(key, steps_ahead=1))  # the enrolment's code is spent
    page.click("input[type=submit]")
    assert page.url == f"{live_server.url}/admin/people/person/"
    assert "Camille" in page.text_content("#result_list")


def test_six_wrong_passwords_lock_the_account(live_server, chromium, world):
    page = chromium.new_page(locale="fr-FR")
    for _ in range(6):
        log_in(page, live_server.url, world.staff.get_username(), "not her password")
    assert "Trop de tentatives de connexion ont échoué pour ce compte" in page.text_content("#locked-out")
    log_in(page, live_server.url, world.staff.get_username())
    assert "Trop de tentatives de connexion ont échoué" in page.text_content("#locked-out")
    assert "/staff/" not in page.url

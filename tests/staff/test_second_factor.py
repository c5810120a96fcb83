"""Staff who reach evidence (administrators, referents) and superusers need a second
factor: after the password, an authenticator code (enrolled the first time, with
recovery codes shown once), or a recovery code, which is used up. A password alone never
opens the back-office to them; other roles may enrol, and are then asked too."""

from __future__ import annotations

import re
from base64 import b32decode

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from balise.associations.models import Membership
from tests.personas import authenticator, staff_client, totp_code

from .helpers import password_login, text

pytestmark = pytest.mark.django_db

ENROL = reverse("staff:enrol")
VERIFY = reverse("staff:verify")


def secret_of(page) -> bytes:
    text = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.content.decode())[1].replace(" ", "")
    return b32decode(text + "=" * (-len(text) % 8))


def enrol(client) -> list[str]:
    page = client.get(f"{ENROL}?next=/admin/")
    key = secret_of(page)
    done = client.post(ENROL + "?next=/admin/", {"token": totp_code(key), "next": "/admin/"})
    assert done.status_code == 302 and done["Location"].startswith(reverse("staff:recovery_codes"))
    codes = client.get(done["Location"])
    return re.findall(r"<li><code>([a-z2-7]+)</code></li>", codes.content.decode())


@pytest.mark.parametrize("role", [Membership.Role.REFERENT, Membership.Role.ADMIN])
def test_a_password_alone_never_opens_the_back_office_to_those_who_reach_evidence(world, role):
    Membership.objects.filter(user=world.staff).update(role=role)
    client, r = password_login(world.staff)
    assert r.status_code == 302 and r["Location"].startswith(ENROL)
    for url in ("/admin/", reverse("admin:people_person_changelist"), reverse("admin:evidence_case_changelist")):
        page = client.get(url, follow=True)
        assert page.redirect_chain and page.redirect_chain[-1][0].startswith(ENROL), url
        assert world.person.display_name not in page.content.decode()


def test_a_superuser_needs_one_too(db):
    root = get_user_model().objects.create_superuser("root", password="correct horse battery")
    client, r = password_login(root)
    assert r["Location"].startswith(ENROL)
    assert client.get("/admin/auth/user/").status_code == 302


def test_enrolment_shows_a_qr_code_and_the_secret_then_recovery_codes_once(world, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a wrong code below; throttling has its own test
    client, _ = password_login(world.staff)
    page = client.get(f"{ENROL}?next=/admin/")
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and "application d'authentification" in text(page)
    key = secret_of(page)
    assert secret_of(client.get(ENROL)) == key  # the same secret until confirmed

    wrong = client.post(ENROL, {"token": "000000" if totp_code(key) != "000000" else "111111"})
    assert wrong.status_code == 200 and "Ce code n'est pas valide" in text(wrong)
    assert not TOTPDevice.objects.filter(user=world.staff, confirmed=True).exists()

    codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get(reverse("staff:recovery_codes")).status_code == 302  # shown once
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("admin:evidence_case_changelist")).status_code == 200


def test_next_logins_ask_the_code_or_a_recovery_code_which_works_once(world, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 0  # throttling: its own test
    client, _ = password_login(world.staff)
    codes = enrol(client)
    key = TOTPDevice.objects.get(user=world.staff).bin_key
    client.post(reverse("staff:sign_out"))

    client, r = password_login(world.staff)
    assert r["Location"].startswith(VERIFY)
    assert client.get("/admin/").status_code == 302
    bad = client.post(VERIFY, {"token": "12345"})
    assert bad.status_code == 200 and "Ce code n'est pas valide" in text(bad)
    ok = client.post(f"{VERIFY}?next=/admin/people/person/", {"token": totp_code(key, steps_ahead=1)})
    assert ok.status_code == 302 and ok["Location"] == "/admin/people/person/"
    assert client.get("/admin/").status_code == 200

    for attempt in range(2):
        client, _ = password_login(world.staff)
        r = client.post(VERIFY, {"token": codes[0].upper()})
        if attempt == 0:
            assert r.status_code == 302 and client.get("/admin/").status_code == 200
        else:
            assert r.status_code == 200 and client.get("/admin/").status_code == 302  # used up
    assert StaticToken.objects.filter(device__user=world.staff).count() == 9


def test_a_password_alone_cannot_enrol_a_new_authenticator(world):
    authenticator(world.staff)
    client, r = password_login(world.staff)
    assert r["Location"].startswith(VERIFY)
    assert client.get(ENROL)["Location"].startswith(VERIFY)
    assert client.post(ENROL, {"token": "123456"})["Location"].startswith(VERIFY)
    assert TOTPDevice.objects.filter(user=world.staff).count() == 1


def test_wrong_codes_are_throttled(world, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 600  # one wrong code: ten minutes before the next try
    device = authenticator(world.staff)
    client, _ = password_login(world.staff)
    good = totp_code(device.bin_key)
    wrong = "000000" if good != "000000" else "111111"
    client.post(VERIFY, {"token": wrong})
    r = client.post(VERIFY, {"token": good})  # right code, but too soon after a wrong one
    assert r.status_code == 200 and "Trop de codes erronés" in r.content.decode()
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("role", [Membership.Role.WORKER, Membership.Role.VIEWER])
def test_other_roles_may_enrol_and_are_then_asked(world, role):
    Membership.objects.filter(user=world.staff).update(role=role)
    client, r = password_login(world.staff)
    assert r["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200 and "Mettre en place un second facteur" in text(index)  # offered
    page = client.get(ENROL)
    assert page.status_code == 200 and "<svg" in page.content.decode()
    enrol(client)
    assert "enrol-second-factor" not in text(client.get("/admin/"))
    client.post(reverse("staff:sign_out"))
    client, r = password_login(world.staff)
    assert r["Location"].startswith(VERIFY) and client.get("/admin/").status_code == 302


def test_a_superuser_resets_a_lost_second_factor(world, capsys):
    staff = staff_client(world.staff)
    assert staff.get("/admin/").status_code == 200
    call_command("reset_second_factor", world.staff.get_username())
    assert "1 device(s) removed" in capsys.readouterr().out
    assert not TOTPDevice.objects.filter(user=world.staff).exists()
    client, r = password_login(world.staff)
    assert r["Location"].startswith(ENROL)  # she sets up a new one
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("reset_second_factor", "nobody")


def test_the_enrolment_pages_are_for_logged_in_staff(db, client):
    for url in (ENROL, VERIFY):
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith(reverse("admin:login"))


def test_next_never_leaves_the_site(world):
    device = authenticator(world.staff)
    client, _ = password_login(world.staff)
    r = client.post(f"{VERIFY}?next=https://evil.example/", {"token": totp_code(device.bin_key)})
    assert r.status_code == 302 and r["Location"] == "/admin/"


def test_the_console_asks_for_the_second_factor_too(world):
    board = reverse("console:board")
    password_only = staff_client(world.staff, second_factor=False)
    r = password_only.get(board)
    assert r.status_code == 302 and r["Location"].startswith(ENROL)
    assert staff_client(world.staff).get(board).status_code == 200
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.WORKER)
    TOTPDevice.objects.filter(user=world.staff).delete()
    assert staff_client(world.staff, second_factor=False).get(board).status_code == 200

"""Login throttling (django-axes): after BALISE_LOGIN_FAILURE_LIMIT wrong passwords for
one username from one address, even the right password is refused, with a French page,
until the cool-off has passed. Behind a trusted proxy the client's address is read from
the proxy's header, and only then."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.utils import timezone

from .helpers import password_login, text

pytestmark = pytest.mark.django_db


def fail(user, times: int, **extra):
    return [password_login(user, password="wrong password", **extra)[1].status_code for _ in range(times)]


def test_six_wrong_passwords_lock_the_account_then_the_cool_off_frees_it(world, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert fail(world.staff, 6) == [200, 200, 200, 200, 429, 429]
    _, r = password_login(world.staff)
    assert r.status_code == 429
    page = text(r)
    assert "Trop de tentatives de connexion ont échoué pour ce compte" in page and "15 minutes" in page
    assert "_auth_user_id" not in r.wsgi_request.session

    # The cool-off passes (the attempts are moved into the past instead of waiting).
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    _, r = password_login(world.staff)
    assert r.status_code == 302


def test_lockout_is_per_username_and_address(world, other_world):
    fail(world.staff, 5, REMOTE_ADDR="192.0.2.10")
    assert password_login(world.staff, REMOTE_ADDR="192.0.2.10")[1].status_code == 429
    assert password_login(world.staff, REMOTE_ADDR="192.0.2.11")[1].status_code == 302  # she, elsewhere
    assert password_login(other_world.staff, REMOTE_ADDR="192.0.2.10")[1].status_code == 302  # a colleague, same office


def test_a_success_before_the_limit_starts_the_count_again(world):
    fail(world.staff, 4)
    assert password_login(world.staff)[1].status_code == 302
    assert fail(world.staff, 4) == [200] * 4


def test_the_proxy_header_counts_only_behind_a_trusted_proxy(world, settings):
    # Not trusted: a forged header changes nothing, the connection's address is locked.
    for i in range(5):
        password_login(world.staff, password="wrong password", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    assert password_login(world.staff, HTTP_X_FORWARDED_FOR="198.51.100.99")[1].status_code == 429

    # Behind one trusted proxy: the address it appended (the last one) is the client's,
    # whatever the client wrote before it.
    AccessAttempt.objects.all().delete()
    settings.TRUSTED_PROXIES = 1
    fail(world.staff, 5, HTTP_X_FORWARDED_FOR="203.0.113.66, 198.51.100.7")
    assert password_login(world.staff, HTTP_X_FORWARDED_FOR="203.0.113.1, 198.51.100.7")[1].status_code == 429
    assert password_login(world.staff, HTTP_X_FORWARDED_FOR="198.51.100.8")[1].status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}


def test_the_header_name_is_a_setting(world, settings):
    settings.TRUSTED_PROXIES, settings.CLIENT_IP_HEADER = 1, "X-Real-IP"
    fail(world.staff, 5, HTTP_X_REAL_IP="198.51.100.20")
    assert password_login(world.staff, HTTP_X_REAL_IP="198.51.100.20")[1].status_code == 429
    assert password_login(world.staff, HTTP_X_REAL_IP="198.51.100.21")[1].status_code == 302


def test_a_superuser_unlocks_her_sooner(world):
    from django.core.management import call_command

    fail(world.staff, 5)
    assert password_login(world.staff)[1].status_code == 429
    call_command("axes_reset_username", world.staff.get_username())
    assert password_login(world.staff)[1].status_code == 302


def test_the_console_login_is_throttled_too(world):
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    url = reverse("console:login")
    statuses = [client.post(url, {"username": world.staff.get_username(), "password": "wrong password"}).status_code
                for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    r = client.post(url, {"username": world.staff.get_username(), "password": "correct horse battery"})
    assert r.status_code == 429 and "Trop de tentatives" in text(r)

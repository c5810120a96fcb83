"""HTTPS deployments: `balise manage check --deploy` is clean with the production
settings that README.md documents, and warns without them; the settings reach the
cookies and headers."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_production_env() -> dict[str, str]:
    """The `export NAME=VALUE` lines of README.md's Production section."""
    section = README.read_text(encoding="utf-8").split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return dict(re.findall(r"^export (BALISE_\w+)=(\S+)", block, re.MULTILINE))


def deploy_check(tmp_path, extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_") and k != "DATABASE_URL"}
    env.update(extra, BALISE_DATA_DIR=str(tmp_path / "data"))
    for name, value in list(env.items()):
        if name.startswith("BALISE_") and name.endswith("_FILE"):  # secrets: real files here
            secret = tmp_path / Path(value).name
            secret.write_text(secrets.token_urlsafe(50))
            env[name] = str(secret)
    return subprocess.run([sys.executable, "-m", "balise", "manage", "check", "--deploy", "--fail-level", "WARNING"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_documented_production_settings_pass_the_deploy_check(tmp_path):
    documented = documented_production_env()
    assert {"BALISE_SECURE_COOKIES", "BALISE_HSTS_SECONDS", "BALISE_BEHIND_HTTPS_PROXY", "BALISE_SSL_REDIRECT",
            "BALISE_SECRET_KEY_FILE"} <= documented.keys()
    result = deploy_check(tmp_path, documented)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


def test_without_them_the_deploy_check_warns(tmp_path):
    result = deploy_check(tmp_path, {"BALISE_SECRET_KEY": secrets.token_urlsafe(50)})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


@pytest.mark.django_db
def test_https_settings_reach_cookies_and_headers(world, settings):
    from .helpers import password_login

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = 3600, True
    settings.SECURE_SSL_REDIRECT = True

    plain = Client(HTTP_HOST="127.0.0.1").get("/admin/login/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert Client(HTTP_HOST="127.0.0.1").get("/health").status_code in (200, 503)  # probes stay on HTTP

    page = Client(HTTP_HOST="127.0.0.1").get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert page["X-Frame-Options"] == "DENY" and page["Referrer-Policy"] == "same-origin"
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"

    _, r = password_login(world.staff, HTTP_X_FORWARDED_PROTO="https")
    assert r.status_code == 302
    session = r.cookies["sessionid"]
    assert session["secure"] and session["httponly"]

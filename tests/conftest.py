import socket
from pathlib import Path

import pytest

from tests.personas import make_world

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address) -> None:
    if isinstance(address, tuple):
        host = address[0]
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("127."):
            raise OSError(f"tests may not reach the network ({host})")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests talk to real peers, but only on loopback."""

    def connect(self, address):
        _loopback_only(address)
        return _real_connect(self, address)

    def connect_ex(self, address):
        _loopback_only(address)
        return _real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def fast_hashes(settings):
    # PINs and passwords are hashed with PBKDF2 in production; tests need no slowness.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def steady_authenticator(settings):
    """No drift learnt from a code entered across a 30 s boundary (an enrolment at the
    end of a step would otherwise shift the window, and the next step's code a test
    enters would fall outside it)."""
    settings.OTP_TOTP_SYNC = False


@pytest.fixture
def world(db):
    return make_world("lyon")


@pytest.fixture
def other_world(db):
    return make_world("oise")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture
def place_names():
    """The offline gazetteer loaded: messages never wait for it (the first SMS after a
    start may go without a place name), so tests that look for one load it first."""
    from balise.tracking import places

    places.preload()
    assert places._loaded.wait(120), "the offline gazetteer did not load"


@pytest.fixture
def chromium(monkeypatch):
    """Debian's Chromium, headless, driven by Playwright (no browser can be downloaded here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: apt-get install chromium")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()

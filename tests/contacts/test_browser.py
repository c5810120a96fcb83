"""The live page in real headless Chromium, served by `balise serve` (uvicorn, ASGI,
its own dispatcher and the console provider), driven only through HTTP like real life:
the device API raises the alert and sends fixes, the link comes from the console SMS."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from django.db import connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def server(tmp_path, world):
    port = _free_port()
    outbox = tmp_path / "outbox.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), DATABASE_URL=_database_url(),
               BALISE_CONSOLE_OUTBOX=str(outbox), BALISE_CONSOLE_VOICE_DEFAULT="off",
               # tiles are unreachable: the page must work without them
               BALISE_MAP_TILES_URL="http://127.0.0.1:9/{z}/{x}/{y}.png", BALISE_DISPATCH_POLL_SECONDS="0.2")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "balise", "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "server.log").read_text())
            time.sleep(0.1)
    yield base, outbox
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    # Shown by pytest only when the test failed: what the server said about a 5xx.
    print((tmp_path / "server.log").read_text()[-6000:])


def _post(api: httpx.Client, url: str, body: dict) -> httpx.Response:
    """As a device does: a 503 (busy database) is retried after its Retry-After."""
    deadline = time.monotonic() + 60
    while True:
        r = api.post(url, json=body)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _fix(lat: float, lon: float, acc: float) -> dict:
    return {"id": str(uuid.uuid4()), "lat": lat, "lon": lon, "accuracy_m": acc, "recorded_at": _now(), "source": "gps"}


def _link_for(outbox: Path, phone: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox.exists():
            for line in outbox.read_text().splitlines():
                record = json.loads(line)
                if record["to"] == phone and record["channel"] == "sms" and record["purpose"] == "alert":
                    return re.search(r"http://\S+/s/\S+", record["text"]).group(0)  # the page is served there
        time.sleep(0.1)
    raise AssertionError(f"no SMS to {phone} in the console outbox")


def test_live_page_follows_the_alert_and_the_answers(server, chromium, world):
    base, outbox = server
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {world.token}"}, timeout=10)
    client_id = str(uuid.uuid4())
    r = _post(api, "/alerts", {"client_id": client_id, "kind": "prevention", "gesture": "single",
                                  "triggered_at": _now(), "fixes": [_fix(45.7578, 4.8320, 30)]})
    assert r.status_code == 201, r.text
    link = _link_for(outbox, world.contacts[0].phone)
    other_link = _link_for(outbox, world.contacts[1].phone)

    context = chromium.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True, locale="fr-FR")
    from playwright.sync_api import expect

    page = context.new_page()
    started = time.monotonic()
    page.goto(link, wait_until="domcontentloaded")
    loaded_ms = (time.monotonic() - started) * 1000
    assert "Camille" in page.inner_text("#headline")
    assert page.inner_text("#coords") == "45.75780, 4.83200"
    assert "Lyon" in page.inner_text("#place")
    assert page.get_attribute("a[href='tel:17']", "href") == "tel:17"
    page.wait_for_selector("#map.leaflet-container", timeout=10_000)  # Leaflet drew the map without tiles
    page.locator("#map path").nth(1).wait_for()  # accuracy circle + marker (no string eval: the page's CSP forbids it)

    # Fixes arrive: the position updates without reloading.
    r = _post(api, f"/alerts/{client_id}/fixes", {"fixes": [_fix(45.7600, 4.8400, 12)]})
    assert r.status_code == 200, r.text
    expect(page.locator("#coords")).to_have_text("45.76000, 4.84000", timeout=10_000)
    assert "12" in page.inner_text("#accuracy")
    page.locator("#map path").nth(2).wait_for()  # the trail appears

    # Another contact answers from her own link: it appears here.
    r = httpx.post(f"{other_link}/answer", data={"answer": "called_police"}, headers={"Accept": "application/json"})
    assert r.status_code == 200
    expect(page.locator("#answers")).to_contain_text("Proche 2", timeout=10_000)
    # This contact answers with one thumb.
    page.tap("button[value='on_my_way']")
    page.locator("#answers .mine").wait_for(timeout=10_000)
    assert page.get_attribute("button[value='on_my_way']", "aria-pressed") == "true"

    # Readable at 360 px: nothing wider than the screen, targets at least 44 px high.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    heights = page.evaluate("[...document.querySelectorAll('.call, .btn')].map(e => e.getBoundingClientRect().height)")
    assert min(heights) >= 44
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "contact-page-360.png"), full_page=True)

    # Without server-sent events, the page polls.
    fallback = context.new_page()
    fallback.add_init_script("delete window.EventSource")
    fallback.goto(_link_for(outbox, world.contacts[4].phone))
    r = _post(api, f"/alerts/{client_id}/fixes", {"fixes": [_fix(45.7700, 4.8500, 8)]})
    assert r.status_code == 200, r.text
    expect(fallback.locator("#coords")).to_have_text("45.77000, 4.85000", timeout=15_000)
    assert fallback.evaluate("document.documentElement.lang") == "en"  # contact 5 reads English
    context.close()
    print(f"contact page DOMContentLoaded in {loaded_ms:.0f} ms")


def test_a_bad_link_shows_a_plain_page_in_the_browser(server, chromium, world):
    base, _outbox = server
    page = chromium.new_page(viewport={"width": 360, "height": 640})
    response = page.goto(f"{base}/s/forged-token")
    assert response.status == 404
    assert "17" in page.inner_text("body") and "Camille" not in page.content()

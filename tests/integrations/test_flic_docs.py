"""docs/flic.md's recipe for phones without an app (Apple Shortcuts, Android automation)
is a real request: built from the page exactly as the recipe says, sent over HTTP to a
running server, it raises the alert with the phone's position."""

from __future__ import annotations

import random
import re
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from balise.alerts.models import Alert
from balise.devices.actions import issue_token
from balise.devices.models import Device

DOC = Path(__file__).resolve().parents[2] / "docs" / "flic.md"


def documented_request() -> tuple[str, str, dict, str]:
    block = re.search(r"<!-- recipe:request -->\n```http\n(.*?)\n```", DOC.read_text(), re.S).group(1)
    head, body = block.split("\n\n", 1)
    request_line, *header_lines = head.splitlines()
    method, url = request_line.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in header_lines)
    return method, url, headers, body


def fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    assert "{" not in text.replace('{"', "").replace("[{", ""), text
    return text


@pytest.mark.usefixtures("transactional_db")
def test_the_documented_shortcut_request_raises_an_alert(live_server, world):
    phone = Device.objects.create(association=world.association, holder=world.person, kind=Device.Kind.PHONE,
                                  hardware_id="phone-camille", status=Device.Status.ASSIGNED)
    now = timezone.localtime()
    values = {
        "SERVER": live_server.url, "TOKEN": issue_token(phone),
        "DATE": now.strftime("%Y%m%d"), "TIME": now.strftime("%H%M"),
        "RANDOM": str(random.randint(100000000000, 999999999999)),
        "NOW": now.isoformat(timespec="seconds"), "LAT": "45.76401", "LON": "4.83572", "ACCURACY": "12",
    }
    method, url, headers, body = documented_request()
    request = dict(method=method, url=fill(url, values), headers={k: fill(v, values) for k, v in headers.items()},
                   content=fill(body, values).encode())
    first = httpx.request(**request, timeout=30)
    assert first.status_code == 201, first.text
    again = httpx.request(**request, timeout=30)  # "run the shortcut again" on a lost answer
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    alert = Alert.objects.get()
    assert (alert.kind, alert.device, alert.gesture) == ("prevention", phone, "api")
    fix = alert.fixes.get()
    assert (fix.lat, fix.lon, fix.accuracy_m, fix.source) == (45.76401, 4.83572, 12.0, "gps")

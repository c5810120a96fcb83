"""Flic buttons for the tests: registered as the back-office does, and tokens minted
with the claims Flic documents, signed as Flic's backend (ES256) or a shared secret."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from balise.devices.models import Device
from balise.integrations.flic.models import FlicButton, FlicSettings
from balise.tracking.shortlinks import ALPHABET

SERIAL = "BC44-B06243"
BUTTON_UUID = "336c33540c134a929824e41c0bd3c377"
HS_SECRET = "a-shared-secret-of-at-least-32-bytes-for-tests"
PARIS_OFFSET = "+02:00"

# One key pair for the run: Flic's backend's private key, as far as the tests go.
PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_PEM = PRIVATE_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def register(world, *, serial: str = SERIAL, button_uuid: str | None = BUTTON_UUID, algorithm: str = "ES256",
             **config) -> FlicButton:
    """A Flic button handed to the world's person, and her association's Flic settings."""
    FlicSettings.objects.update_or_create(
        association=world.association,
        defaults={"algorithm": algorithm, "public_key": PUBLIC_PEM if algorithm == "ES256" else "",
                  "webview_public_key": PUBLIC_PEM if algorithm == "ES256" else "", **config})
    device = Device.objects.create(association=world.association, holder=world.person, kind=Device.Kind.FLIC,
                                   hardware_id=serial, status=Device.Status.ASSIGNED)
    return FlicButton.objects.create(device=device, uuid=button_uuid)


def claims(click: str | None = "click", *, pressed_at: datetime | None = None, serial: str = SERIAL,
           button_uuid: str = BUTTON_UUID, battery: str = "high", exp_in: float = 300, **extra) -> dict:
    at = pressed_at or timezone.now()
    body = {
        "exp": int(time.time() + exp_in),
        "buttonUuid": button_uuid,
        "buttonSerialNumber": serial,
        "buttonName": serial,
        "buttonBatteryStatus": battery,
        "pressedAt": at.astimezone(timezone.get_fixed_timezone(120)).isoformat(timespec="seconds"),
    }
    if click is not None:
        body["clickType"] = click
    body.update(extra)
    return body


def es256(payload: dict, key=PRIVATE_KEY) -> str:
    return jwt.encode(payload, key, algorithm="ES256")


def hs256(payload: dict, secret: str = HS_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def post(client, token, **extra):
    body = json.dumps({"token": token}) if not isinstance(token, bytes) else token
    return client.post("/integrations/flic/", data=body, content_type="application/json", **extra)


def with_location(lat: float = 45.7640, lon: float = 4.8357, accuracy: float = 12.0) -> dict:
    return {"latitude": lat, "longitude": lon, "accuracy": accuracy}


def ago(seconds: float) -> datetime:
    return timezone.now() - timedelta(seconds=seconds)


SHORT_LINK = re.compile(rf"https?://[^/\s]+(/s/[{ALPHABET}]{{10}})(?=\s)")


def page_behind(client, sms_text: str) -> str:
    """The contact's live page, served at the short link of SMS_TEXT (the first SMS
    carries a place name and the link; the coordinates are on the page)."""
    found = SHORT_LINK.search(sms_text)
    assert found, sms_text
    page = client.get(found.group(1))
    assert page.status_code == 200
    return page.content.decode()

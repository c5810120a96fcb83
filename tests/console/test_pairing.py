"""Pairing from the person's file: a one-time code (and its QR code), valid 15 minutes,
exchanged once by the device for its token (POST /api/v1/pair); guessing is rate-limited;
pairing again revokes the old token."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from balise.alerts.models import Alert
from balise.console import pairing
from balise.console.models import PairingCode
from balise.devices.models import Device
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def device_client(addr: str = "10.0.0.7") -> Client:
    return Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR=addr)


def exchange(code: str, addr: str = "10.0.0.7"):
    return device_client(addr).post("/api/v1/pair", json.dumps({"code": code}), content_type="application/json")


def code_from(html: str) -> str:
    return re.search(r'id="pairing-code">([A-Z0-9-]+)<', html).group(1)


def test_a_new_device_pairs_once_and_then_raises_alerts(world):
    staff = staff_client(world.staff)
    page = staff.post(reverse("console:device_add", args=[world.person.pk]), {"kind": "station", "hardware_id": "st-42"})
    html = page.content.decode()
    assert page.status_code == 200 and page["Cache-Control"] == "no-store" and "<svg" in html  # the QR code
    code = code_from(html)
    stored = PairingCode.objects.get()
    assert code.replace("-", "") not in stored.code_hash
    assert stored.expires_at - stored.created_at == timedelta(minutes=15)

    first = exchange(code.lower())  # typed by hand: case and dash do not matter
    assert first.status_code == 200, first.content
    token = first.json()["token"]
    assert first.json()["device"] == "st-42"
    again = exchange(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_code"

    api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    r = api.post("/api/v1/alerts", json.dumps({"client_id": str(uuid.uuid4()), "kind": "test"}),
                 content_type="application/json")
    assert r.status_code == 201, r.content
    assert Alert.objects.get().device.hardware_id == "st-42"
    # The token itself is never displayed in the console.
    assert token not in staff.get(reverse("console:person", args=[world.person.pk])).content.decode()


def test_a_code_expires_after_15_minutes(world):
    issued = timezone.now() - timedelta(minutes=15, seconds=1)
    code = pairing.create_code(world.device, world.staff, now=issued)
    r = exchange(code)
    assert r.status_code == 410 and r.json()["error"] == "expired_code"
    fresh = pairing.create_code(world.device, world.staff, now=issued)
    assert pairing.exchange(fresh, "s", now=issued + timedelta(minutes=14, seconds=59)).token


def test_a_new_code_replaces_the_previous_one(world):
    old = pairing.create_code(world.device, world.staff)
    new = pairing.create_code(world.device, world.staff)
    assert exchange(old).status_code == 410
    assert exchange(new).status_code == 200


def test_guessing_is_rate_limited(world, settings):
    code = pairing.create_code(world.device, world.staff)
    for _ in range(settings.PAIRING_MAX_FAILURES):
        assert exchange("AAAAA-AAAAA").status_code == 400
    limited = exchange(code)  # even the right code: the source is blocked for a while
    assert limited.status_code == 429 and limited["Retry-After"]
    assert exchange(code, addr="10.0.0.8").status_code == 200  # another source is not


def test_guessing_from_many_sources_is_limited_overall(world, settings):
    settings.PAIRING_MAX_FAILURES_TOTAL = 5
    for i in range(5):
        exchange("BBBBB-BBBBB", addr=f"10.1.0.{i}")
    assert exchange("BBBBB-BBBBB", addr="10.2.0.1").status_code == 429


def test_bad_input_names_the_field(world):
    r = device_client().post("/api/v1/pair", json.dumps({"kode": "x"}), content_type="application/json")
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "code"
    assert exchange("x" * 100).status_code == 400


def test_a_re_paired_station_s_old_token_is_refused(world):
    old = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {world.token}")
    assert old.post("/api/v1/heartbeat", "{}", content_type="application/json").status_code == 200
    staff = staff_client(world.staff)
    code = code_from(staff.post(reverse("console:device_pair", args=[world.device.pk])).content.decode())
    new_token = exchange(code).json()["token"]
    assert old.post("/api/v1/heartbeat", "{}", content_type="application/json").status_code == 401
    new = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {new_token}")
    assert new.post("/api/v1/heartbeat", "{}", content_type="application/json").status_code == 200


def test_revoke_from_the_file(world):
    staff = staff_client(world.staff)
    staff.post(reverse("console:device_revoke", args=[world.device.pk]))
    old = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {world.token}")
    assert old.post("/api/v1/heartbeat", "{}", content_type="application/json").status_code == 401
    assert Device.objects.get(pk=world.device.pk).credentials.filter(revoked_at__isnull=True).count() == 0


def test_another_association_cannot_pair_her_devices(world, other_world):
    stranger = staff_client(other_world.staff)
    assert stranger.post(reverse("console:device_pair", args=[world.device.pk])).status_code == 404
    assert stranger.post(reverse("console:device_revoke", args=[world.device.pk])).status_code == 404
    assert not PairingCode.objects.exists()


def _p256_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_re_installed_station_s_evidence_key_is_revoked_and_re_enrolled(world):
    from balise.associations.models import Membership
    from balise.evidence.actions import EvidenceError, register_device_key

    old, _ = register_device_key(world.device, _p256_pem())
    with pytest.raises(EvidenceError):
        register_device_key(world.device, _p256_pem())  # one active key per device
    url = reverse("console:device_evidence_key_revoke", args=[world.device.pk])
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.WORKER)
    assert staff_client(world.staff).post(url).status_code == 403  # evidence: referents and administrators
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.REFERENT)
    staff = staff_client(world.staff)
    assert old.fingerprint[:10] in staff.get(reverse("console:person", args=[world.person.pk])).content.decode()
    assert staff.post(url).status_code == 302
    old.refresh_from_db()
    assert old.revoked_at is not None
    new, created = register_device_key(world.device, _p256_pem())  # the station enrols its new key
    assert created and new.revoked_at is None


def test_behind_a_proxy_each_client_has_its_own_limit(world, settings):
    """Behind a reverse proxy every request comes from the proxy's address: the limit is
    the client's (as for staff logins), or ten wrong codes from anyone would block all
    pairing."""
    settings.TRUSTED_PROXIES = 1
    code = pairing.create_code(world.device, world.staff)

    def through_proxy(code: str, client: str):
        return Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=client).post(
            "/api/v1/pair", json.dumps({"code": code}), content_type="application/json")

    for _ in range(settings.PAIRING_MAX_FAILURES):
        assert through_proxy("AAAAA-AAAAA", "203.0.113.5").status_code == 400
    assert through_proxy(code, "203.0.113.5").status_code == 429
    assert through_proxy(code, "198.51.100.7").status_code == 200

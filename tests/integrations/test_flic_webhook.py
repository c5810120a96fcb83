"""The Flic webhook: a press, signed by Flic (ES256) or a shared secret (HS256), becomes
an alert through the device API's action, and every bad request is refused with nothing
created and nothing secret in the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

from datetime import timedelta

import pytest
from django.utils import timezone

from balise.alerts.models import Alert, JoinedPress, LocationFix
from balise.devices.models import Device
from balise.integrations.flic.models import FlicButton
from balise.providers.console import read_outbox
from tests.integrations.flic import (
    BUTTON_UUID,
    HS_SECRET,
    OTHER_KEY,
    PUBLIC_PEM,
    SERIAL,
    ago,
    claims,
    es256,
    hs256,
    page_behind,
    post,
    register,
    with_location,
)
from tests.spine.helpers import drain

EXPECTED = {"click": "prevention", "double_click": "emergency", "hold": "alarm"}


@pytest.mark.parametrize("algorithm", ["ES256", "HS256"])
@pytest.mark.parametrize("click", ["click", "double_click", "hold"])
def test_each_press_reaches_the_contacts_by_sms_with_the_phone_location(
        transactional_db, client, world, console, hs_secret, algorithm, click, place_names):
    register(world, algorithm=algorithm)
    sign = es256 if algorithm == "ES256" else hs256
    response = post(client, sign(claims(click, **with_location(45.76401, 4.83572, 12))))
    assert response.status_code == 200
    assert response.json() == {}  # discretion: no notification text by default
    alert = Alert.objects.get()
    assert (alert.kind, alert.device.kind, alert.person) == (EXPECTED[click], "flic", world.person)
    fix = alert.fixes.get()
    assert (fix.lat, fix.lon, fix.accuracy_m, fix.source) == (45.76401, 4.83572, 12.0, "phone")
    drain(console)
    sms = [r for r in read_outbox(console.outbox_path) if r["channel"] == "sms" and r["alert_id"] == alert.pk
           and r["to"] != world.association.on_call_number]  # (an alarm texts the association's line too)
    assert sorted(r["to"] for r in sms) == sorted(c.phone for c in world.contacts)
    # One-part SMS: the place name, and the short link to her page with the coordinates.
    assert all("Lyon" in r["text"] and "45.76401, 4.83572" in page_behind(client, r["text"]) for r in sms), sms[0]["text"]


def test_the_press_updates_button_health(db, client, world):
    button = register(world)
    assert post(client, es256(claims("click", battery="low"))).status_code == 200
    button.refresh_from_db()
    assert (button.battery_status, button.last_click_type) == ("low", "click")
    assert button.last_pressed_at is not None
    device = Device.objects.get(pk=button.device_id)
    assert device.battery_percent == 0 and device.last_seen_at is not None


def test_a_retry_of_the_same_press_returns_the_same_alert(db, client, world):
    register(world)
    token = es256(claims("double_click", **with_location()))
    assert post(client, token).status_code == 200
    # Flic's proxy retries; a new token for the same press (same pressedAt) too.
    assert post(client, token).status_code == 200
    payload = claims("double_click", **with_location())
    payload["pressedAt"] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["pressedAt"]
    assert post(client, es256(payload)).status_code == 200
    assert Alert.objects.count() == 1 and LocationFix.objects.count() == 1


def test_the_association_remaps_gestures_and_sets_a_neutral_notification(db, client, world):
    register(world, click_kind="test", hold_kind="emergency", notification_text="Rappel enregistré")
    response = post(client, es256(claims("click")))
    assert response.json() == {"message": "Rappel enregistré"}
    assert Alert.objects.get().kind == "test"
    assert FlicButton.objects.get().last_test_at is not None
    post(client, es256(claims("hold", pressed_at=ago(5))))
    assert Alert.objects.order_by("-pk").first().kind == "emergency"


def test_a_button_found_by_uuid_when_the_serial_is_missing(db, client, world):
    register(world)
    payload = claims("click")
    del payload["buttonSerialNumber"]
    assert post(client, es256(payload)).status_code == 200
    assert Alert.objects.count() == 1


def _part(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _none_token(payload: dict) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(payload)}."


def _hmac_token(payload: dict, secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses a PEM key as an HMAC secret."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(payload)}"
    return f"{signing_input}.{_part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


BAD = {
    "expired": (lambda: es256(claims(exp_in=-120)), 401, "expired"),
    "wrong key": (lambda: es256(claims(), key=OTHER_KEY), 401, "invalid_token"),
    "alg none": (lambda: _none_token(claims()), 401, "invalid_token"),
    # HS256 signed with the association's public key as the secret: the classic confusion.
    "public key as HMAC secret": (lambda: _hmac_token(claims(), PUBLIC_PEM.encode()), 401, "invalid_token"),
    "HS256 with some secret": (lambda: hs256(claims()), 401, "invalid_token"),
    # Answered like a bad signature: a serial number does not tell whether Balise knows it.
    "unknown button": (lambda: es256(claims(serial="ZZ99-Z99999", button_uuid="0" * 32)), 401, "invalid_token"),
    "serial and uuid of two buttons": (lambda: es256(claims(button_uuid="f" * 32)), 401, "invalid_token"),
    "no expiry": (lambda: es256({k: v for k, v in claims().items() if k != "exp"}), 401, "invalid_token"),
    "webview token (no click type)": (lambda: es256(claims(None)), 400, "invalid"),
    "unknown click type": (lambda: es256(claims("triple_click")), 400, "invalid"),
    "not a JWT": (lambda: "not.a.jwt", 400, "malformed_token"),
    "1 MB token": (lambda: "e" * (1024 * 1024), 413, "too_large"),
    "3 KB token": (lambda: es256(claims(padding="x" * 3000)) + "x" * 2000, 413, "too_large"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_tokens_are_refused_and_create_nothing(db, client, world, caplog, case):
    register(world)
    make, status, code = BAD[case]
    token = make()
    with caplog.at_level(logging.DEBUG):
        response = post(client, token)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert not Alert.objects.exists()
    _nothing_secret(caplog.text, token)


def test_an_hs256_association_refuses_es256_tokens_and_wrong_secrets(db, client, world, hs_secret, caplog):
    register(world, algorithm="HS256")
    for token in (es256(claims()), hs256(claims(), secret="another-secret-that-is-long-enough-to-use")):
        response = post(client, token)
        assert response.status_code == 401, token
        _nothing_secret(caplog.text, token)
    assert not Alert.objects.exists()
    assert HS_SECRET not in caplog.text


def test_an_hs256_association_without_its_secret_refuses_everything(db, client, world, caplog):
    register(world, algorithm="HS256")
    response = post(client, hs256(claims()))
    assert response.status_code == 401
    assert not Alert.objects.exists()
    assert "BALISE_FLIC" not in response.content.decode()


def test_a_replay_with_another_gesture_is_a_conflict(db, client, world):
    register(world)
    first = claims("click")
    assert post(client, es256(first)).status_code == 200
    forged = dict(first, clickType="hold")
    response = post(client, es256(forged))
    assert (response.status_code, response.json()["error"]) == (409, "replay_conflict")
    assert Alert.objects.get().kind == "prevention"


def test_a_lost_button_is_refused(db, client, world):
    button = register(world)
    Device.objects.filter(pk=button.device_id).update(status=Device.Status.LOST)
    assert post(client, es256(claims())).status_code == 403
    # Someone who found it, without the association's key, learns nothing more than from
    # a serial number Balise never saw.
    forged, unknown = post(client, es256(claims(), key=OTHER_KEY)), post(client, es256(claims(serial="ZZ99-Z99999", button_uuid="0" * 32)))
    assert (forged.status_code, forged.json()) == (unknown.status_code, unknown.json()) == (401, forged.json())
    assert not Alert.objects.exists()


def test_an_unassigned_button_is_a_conflict(db, client, world):
    button = register(world)
    Device.objects.filter(pk=button.device_id).update(holder=None)
    response = post(client, es256(claims()))
    assert (response.status_code, response.json()["error"]) == (409, "device_not_assigned")


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"token": 5}', b"\xff\xfe", b""])
def test_malformed_bodies_are_refused(db, client, world, body):
    register(world)
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["error"] in ("malformed_json", "invalid")
    assert not Alert.objects.exists()


def test_only_post_is_answered(db, client, world):
    assert client.get("/integrations/flic/").status_code == 405


def test_a_malformed_location_never_refuses_the_press(db, client, world):
    register(world)
    response = post(client, es256(claims("click", latitude="nowhere", longitude=1000)))
    assert response.status_code == 200
    assert Alert.objects.get().fixes.count() == 0


def test_a_nested_location_is_read(db, client, world):
    register(world)
    post(client, es256(claims("click", location={"lat": 48.85, "lng": 2.35, "accuracy": 30})))
    fix = Alert.objects.get().fixes.get()
    assert (fix.lat, fix.lon, fix.accuracy_m) == (48.85, 2.35, 30.0)


def _nothing_secret(log_text: str, token) -> None:
    assert SERIAL not in log_text and BUTTON_UUID not in log_text
    if isinstance(token, str) and len(token) > 20:
        for piece in token.split("."):
            if len(piece) > 12:
                assert piece not in log_text


def test_a_button_registered_by_serial_learns_its_uuid_from_its_first_press(db, client, world):
    button = register(world, button_uuid=None)
    other = register(world, serial="AA11-B22222", button_uuid="a" * 32)
    assert post(client, es256(claims("click", button_uuid="a" * 32))).status_code == 200  # taken: not learned
    button.refresh_from_db()
    assert button.uuid is None
    assert post(client, es256(claims("click", pressed_at=ago(3)))).status_code == 200
    button.refresh_from_db()
    assert button.uuid == BUTTON_UUID
    payload = claims("double_click", pressed_at=ago(6))
    del payload["buttonSerialNumber"]
    assert post(client, es256(payload)).status_code == 200  # now found by uuid
    # Her alert stays open: the later presses join it, each recorded with its button.
    alert = Alert.objects.get()
    assert alert.device_id == button.device_id and alert.kind == "emergency"  # the double click escalated it
    assert list(alert.joined_presses.order_by("pk").values_list("device_id", "gesture")) == [
        (button.device_id, "single"), (button.device_id, "double")]
    assert not other.device.alerts.exists() and not other.device.joined_presses.exists()


def test_a_press_that_joins_her_open_alert_stays_idempotent_on_its_press_time(db, client, world, caplog):
    register(world)
    assert post(client, es256(claims("click", pressed_at=ago(10)))).status_code == 200
    joining = claims("double_click", pressed_at=ago(4), **with_location(48.85, 2.35, 20))
    caplog.set_level(logging.INFO, logger="balise.integrations.flic.actions")
    assert post(client, es256(joining)).status_code == 200
    assert "(joined)" in caplog.text
    alert = Alert.objects.get()
    assert alert.kind == "emergency" and alert.joined_presses.count() == 1 and alert.fixes.count() == 1
    # Flic's proxy retries the joined press (a new token, the same pressedAt): the same
    # answer, nothing joined twice, no false replay conflict with the alert's own gesture.
    retry = dict(joining, exp=joining["exp"] + 1)
    response = post(client, es256(retry))
    assert (response.status_code, response.json()) == (200, {})
    assert Alert.objects.count() == 1 and alert.joined_presses.count() == 1 and alert.fixes.count() == 1
    # The same press as another gesture is still a conflict.
    forged = dict(joining, clickType="hold")
    assert post(client, es256(forged)).status_code == 409
    assert Alert.objects.get().kind == "emergency" and alert.joined_presses.count() == 1


# The device API's time range (balise.api.schemas.moment): a pressedAt outside it, or
# unreadable, never refuses the press; the alert is dated when the webhook received it.
BAD_CLOCKS = {
    "year 10000 in UTC": "9999-12-31T23:30:00-14:00",
    "year 9999": "9999-12-31T23:30:00+00:00",
    "offset beyond 14:00": "2026-07-17T12:05:45+15:00",
    "offset of a day": "2026-07-17T12:05:45+25:00",
    "thirteenth month": "2026-13-17T12:05:45+02:00",
    "before 2020": "2019-12-31T23:59:59+00:00",
    "two days ahead": "{ahead}",
    "no offset": "2026-07-17T12:05:45",
    "not a time": "yesterday",
    "a number": 1752753945,
    "missing": None,
}


@pytest.mark.parametrize("case", list(BAD_CLOCKS))
def test_a_press_with_an_unusable_pressed_at_raises_its_alert_dated_on_receipt(db, client, world, case):
    button = register(world)
    payload = claims("double_click", **with_location(45.76401, 4.83572, 12))
    raw = BAD_CLOCKS[case]
    if raw is None:
        del payload["pressedAt"]
    else:
        payload["pressedAt"] = raw.format(ahead=(timezone.now() + timedelta(days=2)).isoformat()) \
            if isinstance(raw, str) else raw
    before = timezone.now()
    token = es256(payload)
    response = post(client, token)
    assert (response.status_code, response.json()) == (200, {})
    alert = Alert.objects.get()
    assert alert.kind == "emergency"
    assert before <= alert.triggered_at <= timezone.now()
    fix = alert.fixes.get()
    assert (fix.lat, fix.lon) == (45.76401, 4.83572) and before <= fix.recorded_at <= timezone.now()
    button.refresh_from_db()
    assert before <= button.last_pressed_at <= timezone.now()
    # Flic's proxy retries with the same token: the same alert, nothing twice.
    assert post(client, token).status_code == 200
    assert Alert.objects.count() == 1 and LocationFix.objects.count() == 1 and not JoinedPress.objects.exists()


@pytest.mark.parametrize("place", [
    {"latitude": 91, "longitude": 4.8},
    {"latitude": 45.7, "longitude": -180.5},
    {"latitude": 45.7, "longitude": 4.8, "accuracy": -1},
    {"latitude": 45.7, "longitude": 4.8, "accuracy": 100_001},
    {"location": {"lat": 45.7, "lng": 4.8, "accuracy": 1e300}},
])
def test_a_position_out_of_the_device_api_ranges_is_left_out_and_the_press_kept(db, client, world, place):
    register(world)
    response = post(client, es256(claims("click", **place)))
    assert response.status_code == 200
    assert Alert.objects.get().fixes.count() == 0
    assert FlicButton.objects.get().last_lat is None


def test_a_position_at_the_edge_of_the_ranges_is_kept(db, client, world):
    register(world)
    post(client, es256(claims("click", latitude=-90, longitude=180, accuracy=100_000)))
    fix = Alert.objects.get().fixes.get()
    assert (fix.lat, fix.lon, fix.accuracy_m) == (-90, 180, 100_000)


UNKNOWN = {"serial": "ZZ99-Z99999", "button_uuid": "0" * 32}
# Every way a token can fail before its signature is verified, for her registered
# button (ES256 association) and for a serial Balise never saw.
FORGED = {
    "HS256 with some secret": lambda **who: hs256(claims(**who)),
    "public key as HMAC secret": lambda **who: _hmac_token(claims(**who), PUBLIC_PEM.encode()),
    "alg none": lambda **who: _none_token(claims(**who)),
    "wrong key": lambda **who: es256(claims(**who), key=OTHER_KEY),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_token_does_not_tell_whether_a_serial_is_registered(db, client, world, caplog, case):
    register(world)
    caplog.set_level(logging.DEBUG)
    registered = post(client, FORGED[case]())
    unknown = post(client, FORGED[case](**UNKNOWN))
    assert registered.status_code == unknown.status_code == 401
    assert registered.content == unknown.content
    assert registered.json() == {"error": "invalid_token", "message": "the token cannot be verified",
                                 "fields": [{"field": "token", "message": "the token cannot be verified"}]}
    # The same answer for every reason, too (no reason can be told apart by its wording).
    assert {post(client, make()).content for make in FORGED.values()} == {registered.content}
    assert not Alert.objects.exists()
    # The server's log keeps the reason, with a digest of the button, never its serial.
    reason = {"alg none": "bad_algorithm", "wrong key": "bad_signature"}.get(case, "algorithm_mismatch")
    assert f"flic webhook refused: {reason} (button " in caplog.text
    if case != "alg none":  # refused before any look-up
        assert "flic webhook refused: unknown_button (button " in caplog.text
    _nothing_secret(caplog.text, registered)
    assert UNKNOWN["serial"] not in caplog.text


def test_the_webview_refuses_forged_tokens_alike(db, client, world):
    register(world)
    pages = {client.get(f"/integrations/flic/page/?token={FORGED[case](**who)}").content.decode()
             for case in FORGED for who in ({}, UNKNOWN)}
    statuses = {client.get(f"/integrations/flic/page/?token={FORGED[case](**who)}").status_code
                for case in FORGED for who in ({}, UNKNOWN)}
    assert len(pages) == 1 and statuses == {401}

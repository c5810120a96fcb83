"""Input ranges at the device API's edge: every out-of-range, malformed or hostile value
is a JSON 4xx naming the field, never a 500, and nothing is stored."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from balise.alerts.models import Alert
from balise.api.jsonbody import MAX_DEPTH, depth
from tests.spine.test_device_api import alert_body, fix, post


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _refused(r, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.content
    body = r.json()
    assert body["error"] and body["message"]
    assert field in [f["field"] for f in body["fields"]], body


@pytest.mark.parametrize(
    "recorded_at",
    [
        "9999-12-31T23:30:00Z",  # the poisoned fix of issue 8
        "9999-12-31T23:30:00-14:00",  # year 10000 once in UTC
        "2026-11-24T18:00:00+16:00",  # beyond what Python's and PostgreSQL's offsets hold
        "2026-11-24T18:00:00-23:59",
        "2026-11-24T18:00:00+14:01",
        "2019-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        0,  # a Unix time, as pydantic reads numbers
    ],
)
def test_fix_times_out_of_range_are_refused(client, world, recorded_at):
    r = post(client, world, "/alerts", alert_body(fixes=[fix(recorded_at=recorded_at)]))
    _refused(r, "fixes.0.recorded_at")
    assert Alert.objects.count() == 0


def test_trigger_time_at_most_a_day_ahead(client, world):
    ahead = timezone.now() + timedelta(hours=25)
    _refused(post(client, world, "/alerts", alert_body(triggered_at=_iso(ahead))), "triggered_at")
    _refused(post(client, world, "/alerts", alert_body(triggered_at="2019-06-01T00:00:00+02:00")), "triggered_at")
    assert Alert.objects.count() == 0


def test_times_at_the_edges_of_the_range_are_accepted_and_stored_in_utc(client, world):
    soon = timezone.now() + timedelta(hours=23)
    body = alert_body(triggered_at=_iso(soon), fixes=[fix(recorded_at="2026-11-25T08:00:00+14:00"),
                                                       fix(recorded_at="2020-01-01T00:00:00Z"),
                                                       fix(recorded_at="2026-11-24T18:00:00")])  # naive: UTC
    r = post(client, world, "/alerts", body)
    assert r.status_code == 201, r.content
    alert = Alert.objects.get()
    assert abs(alert.triggered_at - soon) < timedelta(seconds=1)
    stamps = sorted(f.recorded_at.isoformat() for f in alert.fixes.all())
    assert stamps == ["2020-01-01T00:00:00+00:00", "2026-11-24T18:00:00+00:00", "2026-11-24T18:00:00+00:00"]


def test_fix_times_in_a_later_batch_are_bounded_too(client, world):
    body = alert_body()
    post(client, world, "/alerts", body)
    r = post(client, world, f"/alerts/{body['client_id']}/fixes", {"fixes": [fix(), fix(recorded_at="9999-12-31T23:30:00Z")]})
    _refused(r, "fixes.1.recorded_at")
    assert Alert.objects.get().fixes.count() == 1


@pytest.mark.parametrize(
    "over, field",
    [
        ({"lat": 90.0001}, "lat"), ({"lat": -90.5}, "lat"),
        ({"lon": 180.01}, "lon"), ({"lon": -181}, "lon"),
        ({"accuracy_m": -1}, "accuracy_m"), ({"accuracy_m": 100_001}, "accuracy_m"),
        ({"lat": 1e400}, "lat"),  # read as infinity
        ({"source": "satellite\x00"}, "source"),
    ],
)
def test_positions_out_of_range_are_refused(client, world, over, field):
    r = post(client, world, "/alerts", alert_body(fixes=[fix(**over)]))
    _refused(r, f"fixes.0.{field}")
    assert Alert.objects.count() == 0


def test_not_a_number_is_refused(client, world):
    raw = '{"client_id": "5f0c7a52-3a9e-4a7e-9d0e-6f1d0f8f1b11", "kind": "prevention", "fixes": [' \
          '{"lat": NaN, "lon": 4.8, "recorded_at": "2026-11-24T18:00:00Z"}]}'
    _refused(post(client, world, "/alerts", raw), "fixes.0.lat")


def test_positions_at_the_bounds_are_accepted(client, world):
    fixes = [fix(lat=90, lon=180, accuracy_m=0), fix(lat=-90, lon=-180, accuracy_m=100_000)]
    assert post(client, world, "/alerts", alert_body(fixes=fixes)).status_code == 201


@pytest.mark.parametrize("ids, status", [([2**70], 422), ([0], 422), ([-3], 422), ([2**63 - 1], 201)])
def test_contact_ids_are_database_ids(client, world, ids, status):
    r = post(client, world, "/alerts", alert_body(sms_sent_to_contacts=ids))
    assert r.status_code == status, r.content
    if status == 422:
        _refused(r, "sms_sent_to_contacts.0")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"station_version": "0.1\x00"}, "station_version"),  # a NUL gave a 500 on PostgreSQL
        ({"station_version": "0.1\x1b[2J"}, "station_version"),
        ({"station_version": "0.1\u0085"}, "station_version"),
        ({"station_version": "v" * 41}, "station_version"),
        ({"battery_percent": 101}, "battery_percent"),
        ({"battery_percent": -1}, "battery_percent"),
        ({"buttons": [{"hardware_id": "AA\nBB", "connected": True}]}, "buttons.0.hardware_id"),
        ({"buttons": [{"hardware_id": "AA", "connected": True, "battery_percent": 101}]}, "buttons.0.battery_percent"),
        ({"buttons": [{"hardware_id": "A" * 65, "connected": True}]}, "buttons.0.hardware_id"),
    ],
)
def test_heartbeat_strings_and_levels_are_checked(client, world, body, field):
    _refused(post(client, world, "/heartbeat", body), field)
    world.device.refresh_from_db()
    assert world.device.last_seen_at is None


def test_a_plain_station_version_is_kept(client, world):
    assert post(client, world, "/heartbeat", {"station_version": "0.2.0-rc1 (debian)"}).status_code == 200
    world.device.refresh_from_db()
    assert world.device.station_version == "0.2.0-rc1 (debian)"


def test_control_characters_in_a_pin_are_refused_and_not_counted_as_a_guess(client, world):
    body = alert_body()
    post(client, world, "/alerts", body)
    _refused(post(client, world, f"/alerts/{body['client_id']}/cancel", {"pin": "24\x0068"}), "pin")
    alert = Alert.objects.get()
    assert alert.state == "open" and not alert.events.filter(kind="cancel_refused").exists()


@pytest.mark.parametrize("path", ["/alerts", "/heartbeat", "/evidence/records", "/evidence/device-key"])
def test_a_lone_surrogate_is_a_400_naming_the_body(client, world, path):
    raw = '{"station_version": "\\udcff", "client_id": "\\udcff", "public_key_pem": "\\ud800"}'
    r = post(client, world, path, raw)
    _refused(r, "body", status=400)


@pytest.mark.parametrize("path", ["/alerts", "/heartbeat", "/evidence/records", "/evidence/device-key"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 20_000])
def test_deeply_nested_json_is_a_400_naming_the_body(client, world, path, levels):
    nested = "[" * levels + "]" * levels
    r = post(client, world, path, '{"padding": ' + nested + "}")
    _refused(r, "body", status=400)
    assert Alert.objects.count() == 0


def test_nesting_within_the_cap_is_only_ignored(client, world):
    nested = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    body = alert_body()
    body["padding"] = "{[ brackets in a string do not count ]]]]"
    raw = json.dumps(body)[:-1] + ', "extra": ' + nested + "}"
    assert post(client, world, "/alerts", raw).status_code == 201


def test_depth_counts_brackets_outside_strings_only():
    assert depth(b'{"a": [1, {"b": "[[[[\\"]]]"}]}') == 3
    assert depth(b"[]") == 1 and depth(b'"[["') == 0 and depth(b"") == 0


def test_a_number_with_too_many_digits_is_a_400(client, world):
    r = post(client, world, "/heartbeat", '{"battery_percent": ' + "9" * 5000 + "}")
    _refused(r, "body", status=400)


def test_evidence_key_with_control_characters_is_refused(client, world):
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\x00EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    _refused(post(client, world, "/evidence/device-key", {"public_key_pem": pem}), "public_key_pem")
    _refused(post(client, world, "/evidence/device-key", {"public_key_pem": "A" * 4097}), "public_key_pem")


@pytest.mark.parametrize("raw", ["[null, null]", "[]", '"heartbeat"', "42"])
def test_a_body_that_is_not_an_object_is_a_400(client, world, raw):
    # Found by schemathesis: `[null, null]` was read as an empty heartbeat (200).
    _refused(post(client, world, "/heartbeat", raw), "body", status=400)
    world.device.refresh_from_db()
    assert world.device.last_seen_at is None


@pytest.mark.parametrize(
    "path, body, field",
    [
        # Found by schemathesis: `false` was read as a battery level of 0.
        ("/heartbeat", {"buttons": [{"hardware_id": "AA", "connected": True, "battery_percent": False}]},
         "buttons.0.battery_percent"),
        ("/heartbeat", {"battery_percent": "80"}, "battery_percent"),
        ("/heartbeat", {"button_connected": "yes"}, "button_connected"),
        ("/alerts", alert_body(fixes=[fix(lat="45.7")]), "fixes.0.lat"),
        ("/alerts", alert_body(sms_sent_by_device=1), "sms_sent_by_device"),
        ("/alerts", alert_body(sms_sent_to_contacts=[True]), "sms_sent_to_contacts.0"),
    ],
)
def test_numbers_and_flags_must_be_json_numbers_and_booleans(client, world, path, body, field):
    _refused(post(client, world, path, body), field)


def test_whole_floats_are_still_integers(client, world):
    assert post(client, world, "/heartbeat", {"battery_percent": 80.0}).status_code == 200
    world.device.refresh_from_db()
    assert world.device.battery_percent == 80


@pytest.mark.parametrize("raw", [b"", b"\x00" * 100, "é\u0000".encode(), b"{}"])
def test_a_voice_message_that_is_not_audio_is_a_4xx(client, world, raw):
    r = client.put("/api/v1/voice-message", data=raw, content_type="audio/ogg", **world.auth)
    assert 400 <= r.status_code < 500 and r.json()["error"], r.content

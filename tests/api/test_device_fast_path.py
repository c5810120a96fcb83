"""Heartbeats and presses answered without Django's request machinery (issue 16) answer exactly what
the device API's view answers, byte for byte; everything the fast path does not accept
goes to Django, whose refusal the device gets."""

import asyncio
import json
from datetime import datetime, timedelta, timezone as tz
from unittest import mock

import pytest
from django.db import OperationalError

from balise.api import fastpath
from balise.api.fastpath import DeviceFastPath
from balise.asgi import django_application
from balise.devices.models import Device
from tests.spine.test_device_api import alert_body, post

NOW = datetime(2026, 12, 1, 21, 0, 7, 123456, tzinfo=tz.utc)

pytestmark = pytest.mark.django_db(transaction=True)  # the fast path answers on a worker thread


class Recorder:
    """Django's ASGI application, counting what reaches it."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await django_application(scope, receive, send)


def _call(app, body: bytes, headers: list[tuple[bytes, bytes]], path="/api/v1/heartbeat", method="POST", now=NOW):
    sent, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected (Django listens for it)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    with mock.patch("django.utils.timezone.now", return_value=now):
        asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


def _both(world, body, token=None):
    """(fast path's answer, Django's answer, requests the fast path handed to Django)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = [(b"authorization", f"Bearer {token or world.token}".encode())]
    recorder = Recorder()
    fast = _call(DeviceFastPath(recorder), raw, headers)
    plain = _call(django_application, raw, headers)
    return fast, plain, recorder.calls


def _same(fast, plain):
    assert fast[0] == plain[0]
    assert fast[2] == plain[2]
    # A heartbeat holds no text: the fast path leaves out the language headers that
    # LocaleMiddleware adds to Django's answer, and nothing else.
    language = (b"content-language", b"vary")
    assert ({k: v for k, v in fast[1].items() if k not in language}
            == {k: v for k, v in plain[1].items() if k not in language})


def test_a_heartbeat_is_answered_without_django_and_byte_for_byte_like_the_view(world):
    body = {"battery_percent": 64, "button_connected": False, "station_version": "0.9.0", "modem": "ok",
            "microphone": "unusable", "buttons": [{"hardware_id": "AA:BB", "connected": False, "battery_percent": 64}]}
    fast, plain, handed = _both(world, body)
    assert handed == 0
    assert fast[0] == 200, fast[2]
    _same(fast, plain)
    assert json.loads(fast[2])["server_time"] == "2026-12-01T21:00:07.123Z"
    device = Device.objects.get(pk=world.device.pk)
    assert (device.last_seen_at, device.battery_percent, device.button_connected) == (NOW, 64, False)
    assert (device.modem_state, device.microphone_state, device.station_version) == ("ok", "unusable", "0.9.0")
    assert device.buttons_state == [{"hardware_id": "AA:BB", "connected": False, "since": NOW.isoformat()}]


def test_open_alerts_are_listed_as_the_view_lists_them(client, world):
    assert post(client, world, "/alerts", alert_body(kind="alarm")).status_code == 201
    fast, plain, handed = _both(world, {})
    assert handed == 0
    _same(fast, plain)
    assert [a["kind"] for a in json.loads(fast[2])["open_alerts"]] == ["alarm"]


@pytest.mark.parametrize("body", [
    b"[null, null]",
    b"not json",
    b'{"battery_percent": "80"}',
    b'{"battery_percent": 101}',
    b'{"button_connected": "yes"}',
    b'{"buttons": [{"hardware_id": "A", "connected": true}, {"hardware_id": "A", "connected": true}]}',
    b'{"battery_percent": ' + b"9" * 5000 + b"}",
    b"[" * 40 + b"]" * 40,
])
def test_what_the_fast_path_does_not_accept_gets_django_s_refusal(world, body):
    fast, plain, handed = _both(world, body)
    assert handed == 1
    assert 400 <= fast[0] < 500
    _same(fast, plain)


def test_an_unknown_token_gets_django_s_401(world):
    fast, plain, handed = _both(world, {}, token="bal_unknown")
    assert handed == 1 and fast[0] == 401
    _same(fast, plain)


def test_other_requests_go_to_django(world):
    recorder = Recorder()
    headers = [(b"authorization", f"Bearer {world.token}".encode())]
    status, _, _ = _call(DeviceFastPath(recorder), b"", headers, path="/api/v1/contacts", method="GET")
    assert recorder.calls == 1 and status == 200
    status, _, _ = _call(DeviceFastPath(recorder), b"{}", [], path="/api/v1/heartbeat")
    assert recorder.calls == 2 and status == 401


def test_a_database_error_hands_the_heartbeat_to_django(world):
    with mock.patch.object(fastpath, "_beat", side_effect=OperationalError("database is locked")):
        fast, plain, handed = _both(world, {"battery_percent": 50})
    assert handed == 1
    _same(fast, plain)
    assert fast[0] == 200


@pytest.mark.parametrize("status", [Device.Status.LOST, Device.Status.RETIRED])
def test_a_lost_or_retired_device_s_heartbeat_is_refused_and_not_recorded(world, status):
    Device.objects.filter(pk=world.device.pk).update(status=status)
    fast, plain, handed = _both(world, {"battery_percent": 12})
    assert handed == 1 and fast[0] == 401
    _same(fast, plain)
    assert Device.objects.get(pk=world.device.pk).battery_percent is None


def test_a_revoked_token_s_heartbeat_is_refused(world):
    world.device.credentials.update(revoked_at=NOW)
    fast, plain, handed = _both(world, {"battery_percent": 12})
    assert handed == 1 and fast[0] == 401
    assert Device.objects.get(pk=world.device.pk).last_seen_at is None


def test_a_station_s_buttons_keep_the_time_they_changed(world):
    headers = [(b"authorization", f"Bearer {world.token}".encode())]
    _call(DeviceFastPath(Recorder()), b'{"buttons": [{"hardware_id": "AA", "connected": false}]}', headers)
    later = NOW + timedelta(minutes=5)
    body = b'{"buttons": [{"hardware_id": "AA", "connected": false}, {"hardware_id": "BB", "connected": true}]}'
    _call(DeviceFastPath(Recorder()), body, headers, now=later)
    assert Device.objects.get(pk=world.device.pk).buttons_state == [
        {"hardware_id": "AA", "connected": False, "since": NOW.isoformat()},
        {"hardware_id": "BB", "connected": True, "since": later.isoformat()},
    ]


def test_a_station_under_duress_gets_its_recording_hint_on_the_fast_path(client, world):
    """The hint (balise.evidence.actions.recording_hint) is fresh each time: compared
    opened, not byte for byte."""
    from balise.evidence.actions import register_device_key
    from balise_evidence import crypto, hint
    from tests.personas import DURESS_PIN

    key = crypto.DeviceKey.generate()
    register_device_key(world.device, key.public_pem)
    duress = post(client, world, "/alerts", alert_body(kind="alarm")).json()["client_id"]
    assert post(client, world, f"/alerts/{duress}/cancel", {"pin": DURESS_PIN}).status_code == 200
    fast, plain, handed = _both(world, {})
    assert handed == 0 and fast[0] == plain[0] == 200
    fast_body, plain_body = json.loads(fast[2]), json.loads(plain[2])
    assert fast_body["open_alerts"] == plain_body["open_alerts"] == []
    assert hint.open_hint(key, fast_body["recording_hint"]) == hint.open_hint(key, plain_body["recording_hint"]) == [
        duress]
    assert len(fast[2]) == len(plain[2])


# -- presses ---------------------------------------------------------------------------------

def _press(app, world, body, token=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _call(app, raw, [(b"authorization", f"Bearer {token or world.token}".encode())], path="/api/v1/alerts")


def test_a_press_is_answered_without_django_and_its_retry_through_django_alike(world):
    """Raised on the fast path (201), the same press again through Django replays it (200)
    with the same body; and the other way round."""
    from balise.alerts.models import Alert
    from balise.dispatch.models import Delivery

    for first, then in ((DeviceFastPath, lambda app: app), (lambda app: app, DeviceFastPath)):
        recorder = Recorder()
        body = alert_body(kind="prevention")
        raised = _press(first(recorder), world, body)
        replayed = _press(then(Recorder()), world, body)
        assert (raised[0], replayed[0]) == (201, 200), raised[2]
        assert raised[2] == replayed[2]
        alert = Alert.objects.get(client_id=body["client_id"])
        assert json.loads(raised[2])["id"] == alert.pk
        assert Delivery.objects.filter(alert=alert, channel="sms").count() == 5  # one per consenting contact
        Alert.objects.filter(pk=alert.pk).update(state=Alert.State.RESOLVED)
    assert recorder.calls == 1  # (the second round's first press went to Django)


def test_a_press_that_joins_an_open_alert_is_answered_as_the_view_answers(world):
    first = _press(DeviceFastPath(Recorder()), world, alert_body(kind="prevention"))
    assert first[0] == 201
    recorder = Recorder()
    joined = _press(DeviceFastPath(recorder), world, alert_body(kind="alarm"))
    assert recorder.calls == 0 and joined[0] == 201  # (a new press, recorded on the open alert)
    answer = json.loads(joined[2])
    assert answer["joined_to"] == json.loads(first[2])["client_id"] and answer["kind"] == "alarm"


def test_a_press_the_api_refuses_gets_the_view_s_refusal(world):
    """A press of a device handed to nobody: the fast path answers the view's 409, byte for
    byte (its headers too, but for the language ones)."""
    from balise.devices.models import Device

    Device.objects.filter(pk=world.device.pk).update(holder=None)
    body = json.dumps(alert_body()).encode()
    recorder = Recorder()
    fast = _press(DeviceFastPath(recorder), world, body)
    plain = _press(django_application, world, body)
    assert recorder.calls == 0 and fast[0] == 409
    _same(fast, plain)
    assert json.loads(fast[2])["error"] == "device_not_assigned"


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"client_id": "nope", "kind": "alarm"}',
    b'{"kind": "alarm"}',
    b'{"client_id": "5b0e2f34-6e2c-4c55-9d7c-5d2a2b0c1f00", "kind": "loud"}',
])
def test_a_press_the_fast_path_does_not_accept_gets_django_s_refusal(world, body):
    recorder = Recorder()
    fast = _press(DeviceFastPath(recorder), world, body)
    plain = _press(django_application, world, body)
    assert recorder.calls == 1 and fast[0] in (400, 422)
    _same(fast, plain)


def test_a_press_with_an_unknown_token_gets_django_s_401_and_raises_nothing(world):
    from balise.alerts.models import Alert

    recorder = Recorder()
    fast = _press(DeviceFastPath(recorder), world, alert_body(), token="bal_unknown")
    assert recorder.calls == 1 and fast[0] == 401
    assert not Alert.objects.exists()


def test_a_database_error_hands_the_press_to_django_which_raises_it_once(world):
    from balise.alerts.models import Alert

    body = alert_body(kind="emergency")
    recorder = Recorder()
    with mock.patch.object(fastpath, "_alert", side_effect=OperationalError("database is locked")):
        fast = _press(DeviceFastPath(recorder), world, body)
    assert recorder.calls == 1 and fast[0] == 201
    assert Alert.objects.filter(client_id=body["client_id"]).count() == 1

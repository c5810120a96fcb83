"""The device API as a station or phone app uses it, including every kind of bad input."""

import json
import uuid

import pytest

from balise.alerts.models import Alert
from balise.devices.actions import revoke_tokens
from balise.dispatch.models import Delivery
from tests.personas import CANCEL_PIN, DURESS_PIN, another_holder


def fix(**over):
    body = {"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
            "recorded_at": "2026-11-24T18:00:00Z", "source": "gps"}
    body.update(over)
    return body


def alert_body(**over):
    body = {"client_id": str(uuid.uuid4()), "kind": "prevention", "gesture": "single",
            "triggered_at": "2026-11-24T18:00:00Z", "fixes": [fix()]}
    body.update(over)
    return body


def post(client, world, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(f"/api/v1{path}", data=data, content_type="application/json", **world.auth)


def test_create_alert_writes_alert_fix_and_deliveries(client, world):
    r = post(client, world, "/alerts", alert_body())
    assert r.status_code == 201, r.content
    alert = Alert.objects.get(pk=r.json()["id"])
    assert alert.kind == "prevention" and alert.state == "open" and alert.fixes.count() == 1
    # prevention: one SMS per consenting contact
    assert Delivery.objects.filter(alert=alert, channel="sms").count() == 5
    assert not Delivery.objects.filter(alert=alert, channel="voice").exists()
    assert alert.events.filter(kind="created").exists()


def test_retry_returns_the_same_alert(client, world):
    body = alert_body()
    first = post(client, world, "/alerts", body)
    second = post(client, world, "/alerts", body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert Alert.objects.count() == 1
    assert Delivery.objects.count() == 5


def test_client_id_of_another_device_is_a_conflict(client, world, other_world):
    body = alert_body()
    post(client, world, "/alerts", body)
    r = post(client, other_world, "/alerts", body)
    assert r.status_code == 409 and r.json()["error"] == "client_id_conflict"


def test_emergency_and_alarm_plans(client, world):
    world.contacts[0].consent = "declined"
    world.contacts[0].save()
    r = post(client, world, "/alerts", alert_body(kind="emergency", gesture="double"))
    alert = Alert.objects.get(pk=r.json()["id"])
    # contacts are called one by one: first the first consenting contact
    voice = Delivery.objects.filter(alert=alert, channel="voice")
    assert [d.contact_id for d in voice] == [world.contacts[1].pk]
    assert Delivery.objects.filter(alert=alert, channel="sms").count() == 4
    r = post(client, world, "/alerts", alert_body(kind="alarm", gesture="long"))
    alarm = Alert.objects.get(pk=r.json()["id"])
    assert alarm.record
    # an alarm reaches every registered contact, and the on-call line (called, and sent
    # the SMS with the live map its call speaks of)
    assert Delivery.objects.filter(alert=alarm, channel="voice").count() == 6
    assert Delivery.objects.filter(alert=alarm, channel="sms").count() == 6
    assert Delivery.objects.filter(alert=alarm, channel="sms", contact__isnull=True).count() == 1


def test_test_alert_reaches_only_the_association(client, world):
    r = post(client, world, "/alerts", alert_body(kind="test", gesture="api"))
    deliveries = list(Delivery.objects.filter(alert_id=r.json()["id"]))
    assert [d.recipient for d in deliveries] == [world.association.on_call_number]
    assert all(d.contact_id is None for d in deliveries)


def test_sms_already_sent_by_the_device_is_not_sent_again(client, world):
    r = post(client, world, "/alerts", alert_body(kind="emergency", sms_sent_by_device=True))
    deliveries = Delivery.objects.filter(alert_id=r.json()["id"])
    assert not deliveries.filter(channel="sms").exists()
    assert deliveries.filter(channel="voice").count() == 1


def test_fix_batches_are_idempotent(client, world):
    body = alert_body()
    post(client, world, "/alerts", body)
    batch = {"fixes": [fix(), fix(), body["fixes"][0]]}
    r = post(client, world, f"/alerts/{body['client_id']}/fixes", batch)
    assert r.json() == {"accepted": 2, "duplicates": 1}
    r = post(client, world, f"/alerts/{body['client_id']}/fixes", batch)
    assert r.json() == {"accepted": 0, "duplicates": 3}
    assert Alert.objects.get().fixes.count() == 3


def test_cancel_with_pin(client, world):
    body = alert_body()
    post(client, world, "/alerts", body)
    wrong = post(client, world, f"/alerts/{body['client_id']}/cancel", {"pin": "0000"})
    assert wrong.status_code == 403 and wrong.json()["fields"][0]["field"] == "pin"
    r = post(client, world, f"/alerts/{body['client_id']}/cancel", {"pin": CANCEL_PIN})
    assert r.status_code == 200
    alert = Alert.objects.get()
    assert alert.state == "cancelled" and not alert.duress
    assert not Delivery.objects.filter(alert=alert, state="pending").exists()
    status = client.get(f"/api/v1/alerts/{body['client_id']}", **world.auth)
    assert status.json()["state"] == "cancelled"
    closed = post(client, world, f"/alerts/{body['client_id']}/fixes", {"fixes": [fix()]})
    assert closed.status_code == 409


def test_duress_pin_answers_like_a_cancel_but_escalates(client, world):
    normal, duress = alert_body(), alert_body()
    post(client, world, "/alerts", normal)
    r_cancel = post(client, world, f"/alerts/{normal['client_id']}/cancel", {"pin": CANCEL_PIN})
    post(client, world, "/alerts", duress)  # after the cancel: a press while an alert is open joins it
    r_duress = post(client, world, f"/alerts/{duress['client_id']}/cancel", {"pin": DURESS_PIN})
    assert r_cancel.status_code == r_duress.status_code == 200
    assert r_cancel.content.replace(normal["client_id"].encode(), b"X") == r_duress.content.replace(
        duress["client_id"].encode(), b"X"
    )
    assert sorted(r_cancel.headers.items()) == sorted(r_duress.headers.items())
    alert = Alert.objects.get(client_id=duress["client_id"])
    assert alert.duress and alert.state == "open"
    assert alert.events.filter(kind="duress").exists()
    escalation = Delivery.objects.filter(alert=alert, purpose="escalation", template="duress")
    assert escalation.filter(channel="voice").count() == 6  # every contact and the on-call line
    # the device, and whoever holds it, sees a cancelled alert
    status = client.get(f"/api/v1/alerts/{duress['client_id']}", **world.auth)
    assert status.json()["state"] == "cancelled"
    # the original alert messages still go out
    assert Delivery.objects.filter(alert=alert, purpose="alert", state="pending").count() == 5


def test_heartbeat_and_contacts(client, world):
    r = post(client, world, "/heartbeat", {"battery_percent": 42, "button_connected": False, "station_version": "0.1.0"})
    assert r.status_code == 200 and r.json()["heartbeat_interval_s"] > 0
    world.device.refresh_from_db()
    assert world.device.battery_percent == 42 and world.device.button_connected is False
    assert world.device.last_seen_at is not None
    r = client.get("/api/v1/contacts", **world.auth)
    assert [c["phone"] for c in r.json()["contacts"]] == [c.phone for c in world.contacts]


def test_openapi_schema_is_served(client, db):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and "/api/v1/alerts" in r.json()["paths"]


@pytest.mark.parametrize(
    "body, field",
    [
        (alert_body(kind="panic"), "kind"),
        ({"kind": "prevention"}, "client_id"),
        (alert_body(client_id="not-a-uuid"), "client_id"),
        (alert_body(fixes=[fix(lat="north")]), "fixes.0.lat"),
        (alert_body(fixes=[fix(lat=91)]), "fixes.0.lat"),
        (alert_body(fixes=[fix(recorded_at="yesterday")]), "fixes.0.recorded_at"),
        (alert_body(fixes="everywhere"), "fixes"),
        (alert_body(fixes=[fix() for _ in range(101)]), "fixes"),
        (alert_body(sms_sent_by_device="maybe"), "sms_sent_by_device"),
    ],
)
def test_bad_alert_bodies_name_the_field(client, world, body, field):
    r = post(client, world, "/alerts", body)
    assert r.status_code == 422, r.content
    assert field in [f["field"] for f in r.json()["fields"]]
    assert Alert.objects.count() == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", "\udcff".encode("utf-8", "surrogatepass")])
def test_malformed_bodies_get_json_4xx(client, world, raw):
    r = post(client, world, "/alerts", raw)
    assert 400 <= r.status_code < 500 and r.json()["error"]


def test_huge_body_is_refused(client, world):
    r = post(client, world, "/alerts", alert_body(padding="x" * 200_000))
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_authentication(client, world):
    body = json.dumps(alert_body())
    none = client.post("/api/v1/alerts", data=body, content_type="application/json")
    unknown = client.post("/api/v1/alerts", data=body, content_type="application/json",
                          HTTP_AUTHORIZATION="Bearer bal_nope")
    assert none.status_code == unknown.status_code == 401
    assert none.json()["error"] == "unauthorized"
    revoke_tokens(world.device)
    revoked = post(client, world, "/alerts", alert_body())
    assert revoked.status_code == 401
    assert Alert.objects.count() == 0


def test_a_device_cannot_read_or_cancel_another_associations_alert(client, world, other_world):
    body = alert_body()
    post(client, world, "/alerts", body)
    assert client.get(f"/api/v1/alerts/{body['client_id']}", **other_world.auth).status_code == 404
    r = post(client, other_world, f"/alerts/{body['client_id']}/cancel", {"pin": CANCEL_PIN})
    assert r.status_code == 404
    assert Alert.objects.get().state == "open"


def test_unknown_alert_and_bad_path(client, world):
    assert client.get(f"/api/v1/alerts/{uuid.uuid4()}", **world.auth).status_code == 404
    r = client.get("/api/v1/alerts/not-a-uuid", **world.auth)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "client_id"


def test_wrong_types_in_cancel_and_heartbeat(client, world):
    body = alert_body()
    post(client, world, "/alerts", body)
    assert post(client, world, f"/alerts/{body['client_id']}/cancel", {"pin": 1234}).status_code == 422
    r = post(client, world, "/heartbeat", {"battery_percent": 250})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "battery_percent"


def test_sms_sent_to_some_contacts_by_the_device(client, world):
    texted = [world.contacts[0].pk, world.contacts[2].pk]
    r = post(client, world, "/alerts", alert_body(kind="emergency", sms_sent_to_contacts=texted))
    sms = Delivery.objects.filter(alert_id=r.json()["id"], channel="sms")
    assert sorted(sms.values_list("contact_id", flat=True)) == sorted(
        c.pk for c in world.contacts if c.pk not in texted
    )
    # calls are not affected (emergency: one by one, the first contact first)
    assert Delivery.objects.filter(alert_id=r.json()["id"], channel="voice").count() == 1


def test_heartbeat_lists_open_alerts_and_hides_duress(client, world):
    kept, duress, cancelled = alert_body(), alert_body(), alert_body()
    # One person's alerts one after the other (a press while one is open joins it); the
    # kept one is another person's, on her own device.
    _person, _device, token = another_holder(world, "bis")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    post(client, world, "/alerts", cancelled)
    post(client, world, f"/alerts/{cancelled['client_id']}/cancel", {"pin": CANCEL_PIN})
    post(client, world, "/alerts", duress)
    post(client, world, f"/alerts/{duress['client_id']}/cancel", {"pin": DURESS_PIN})
    client.post("/api/v1/alerts", data=kept, content_type="application/json", **auth)
    beat = post(client, world, "/heartbeat", {}).json()
    # nothing in the answer tells the duress from the cancel: the station treats both alike
    # (but for the recording hint, which only a device's evidence key opens: none here)
    assert beat["open_alerts"] == []
    assert beat == {"server_time": beat["server_time"], "heartbeat_interval_s": beat["heartbeat_interval_s"],
                    "open_alerts": [], "recording_hint": None}
    r = client.post("/api/v1/heartbeat", data={}, content_type="application/json", **auth)
    assert [a["client_id"] for a in r.json()["open_alerts"]] == [kept["client_id"]]
    contacts = client.get("/api/v1/contacts", **world.auth).json()
    assert contacts["association"]["on_call_number"] == world.association.on_call_number


def test_a_busy_database_is_a_503_to_retry_not_a_500(client, world, monkeypatch):
    from django.db import OperationalError

    import balise.api.device

    def no_connection(*args, **kwargs):
        raise OperationalError("couldn't get a connection after 10.00 sec")

    body = alert_body()
    monkeypatch.setattr(balise.api.device.actions, "create_alert", no_connection)
    r = post(client, world, "/alerts", body)
    assert r.status_code == 503 and r["Retry-After"] == "1"
    assert r.json()["error"] == "unavailable"
    monkeypatch.undo()
    assert post(client, world, "/alerts", body).status_code == 201  # the device's retry
    assert Alert.objects.filter(client_id=body["client_id"]).count() == 1

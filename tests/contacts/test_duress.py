"""Duress, as the device and the contacts see it: for the device, every answer is the one
a real cancel gets (compared byte for byte); for the contacts, the alert goes on, fixes
keep coming, earlier answers stay, and whoever already called the police is asked to
confirm instead of being called again."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from datetime import timezone as tz

from django.utils import timezone

from balise.alerts.models import Acknowledgement, Alert
from balise.dispatch.models import Delivery
from balise.tracking.actions import answer_alert
from balise.tracking.present import page_state
from tests.contacts.helpers import deliveries, raise_alert
from tests.personas import CANCEL_PIN, DURESS_PIN




def _fix(lat=45.76, lon=4.83) -> dict:
    return {"id": str(uuid.uuid4()), "lat": lat, "lon": lon, "accuracy_m": 15,
            "recorded_at": timezone.now().isoformat(), "source": "gps"}


def _post(client, world, path, body):
    return client.post(f"/api/v1{path}", data=json.dumps(body), content_type="application/json", **world.auth)


def _press(client, world) -> tuple[str, Alert]:
    body = {"client_id": str(uuid.uuid4()), "kind": "emergency", "gesture": "double",
            "triggered_at": timezone.now().isoformat(), "fixes": [_fix()]}
    r = _post(client, world, "/alerts", body)
    assert r.status_code == 201, r.content
    return body["client_id"], Alert.objects.get(client_id=body["client_id"])


def _same(a: bytes, b: bytes, alert_a: Alert, alert_b: Alert) -> None:
    """A and B are the same bytes once each alert's own id, client id and time are masked."""
    def mask(raw: bytes, alert: Alert) -> bytes:
        data = json.loads(raw)
        for key, value in (("id", alert.pk), ("client_id", str(alert.client_id))):
            raw = raw.replace(json.dumps({key: value})[1:-1].encode(), f'"{key}": "X"'.encode())
        if "created_at" in data:
            raw = raw.replace(json.dumps(data["created_at"]).encode(), b'"T"')
        return raw
    assert mask(a, alert_a) == mask(b, alert_b)


def _heartbeat(client, world, monkeypatch) -> bytes:
    fixed = datetime(2026, 12, 1, 1, 0, tzinfo=tz.utc)
    with monkeypatch.context() as m:
        m.setattr("balise.api.device.timezone.now", lambda: fixed)
        r = _post(client, world, "/heartbeat", {"battery_percent": 80, "button_connected": True})
    assert r.status_code == 200
    return r.content


def test_the_device_cannot_tell_duress_from_cancel(client, world, monkeypatch):
    # A real cancel of an answered alert: what the device sees afterwards.
    cancelled_id, cancelled = _press(client, world)
    answer_alert(cancelled, channel="page", answer="on_my_way", contact=world.contacts[1])
    r_cancel = _post(client, world, f"/alerts/{cancelled_id}/cancel", {"pin": CANCEL_PIN})
    fixes_cancel = _post(client, world, f"/alerts/{cancelled_id}/fixes", {"fixes": [_fix()]})
    status_cancel = client.get(f"/api/v1/alerts/{cancelled_id}", **world.auth)
    heartbeat_cancel = _heartbeat(client, world, monkeypatch)

    # The same story under duress.
    duress_id, duress = _press(client, world)
    answer_alert(duress, channel="page", answer="on_my_way", contact=world.contacts[1])
    r_duress = _post(client, world, f"/alerts/{duress_id}/cancel", {"pin": DURESS_PIN})
    fixes_duress = _post(client, world, f"/alerts/{duress_id}/fixes", {"fixes": [_fix(45.77, 4.84)]})
    # Contacts answer again after the duress, more fixes come: still nothing for the device.
    answer_alert(duress, channel="page", answer="called_police", contact=world.contacts[0])
    more = _post(client, world, f"/alerts/{duress_id}/fixes", {"fixes": [_fix(45.78, 4.85), _fix(45.79, 4.86)]})
    status_duress = client.get(f"/api/v1/alerts/{duress_id}", **world.auth)
    heartbeat_duress = _heartbeat(client, world, monkeypatch)

    duress.refresh_from_db()
    assert duress.duress and duress.is_active
    assert r_cancel.content.replace(cancelled_id.encode(), b"X") == r_duress.content.replace(duress_id.encode(), b"X")
    assert fixes_cancel.status_code == fixes_duress.status_code == more.status_code == 409
    assert fixes_cancel.content == fixes_duress.content == more.content
    assert sorted(fixes_cancel.headers.items()) == sorted(fixes_duress.headers.items())
    assert status_cancel.status_code == status_duress.status_code == 200
    assert status_duress.json()["acknowledged"] is True and status_duress.json()["fixes"] == 1
    _same(status_cancel.content, status_duress.content, cancelled, duress)
    assert heartbeat_cancel == heartbeat_duress
    # …while every fix sent under duress was kept, for her contacts and the association.
    assert duress.fixes.count() == 4
    state = page_state(duress, world.contacts[2])
    assert state["fix"]["coords"] == "45.79000, 4.86000"


def test_an_alert_never_answered_reads_the_same_too(client, world):
    cancelled_id, cancelled = _press(client, world)
    _post(client, world, f"/alerts/{cancelled_id}/cancel", {"pin": CANCEL_PIN})
    duress_id, duress = _press(client, world)
    _post(client, world, f"/alerts/{duress_id}/cancel", {"pin": DURESS_PIN})
    answer_alert(duress, channel="page", answer="on_my_way", contact=world.contacts[1])  # after: not for the device
    a = client.get(f"/api/v1/alerts/{cancelled_id}", **world.auth)
    b = client.get(f"/api/v1/alerts/{duress_id}", **world.auth)
    assert b.json()["acknowledged"] is False
    _same(a.content, b.content, cancelled, duress)


def test_under_duress_who_called_the_police_is_asked_again_not_called(rig, world):
    alert = raise_alert(world, "alarm")
    rig.drain()
    police, on_way = world.contacts[0], world.contacts[1]
    answer_alert(alert, channel="page", answer="called_police", contact=police)
    answer_alert(alert, channel="page", answer="on_my_way", contact=on_way)
    from balise.alerts.actions import cancel_alert

    before = set(deliveries(alert).values_list("pk", flat=True))
    cancel_alert(alert, DURESS_PIN)
    duress = deliveries(alert).exclude(pk__in=before)
    # The duress SMS reaches everyone, the one who called the police included…
    assert police.phone in set(duress.filter(channel="sms").values_list("recipient", flat=True))
    # …but he is not called again: the association calls the police for him.
    called = set(duress.filter(channel="voice").values_list("recipient", flat=True))
    assert police.phone not in called and on_way.phone in called
    # Nor by the chain, every two minutes.
    before = set(deliveries(alert).values_list("pk", flat=True))
    assert rig.fire_next_timer(alert)
    repeated = set(deliveries(alert).exclude(pk__in=before).filter(channel="voice").values_list("recipient", flat=True))
    assert on_way.phone in repeated and police.phone not in repeated

    # Earlier answers are kept and shown; his page asks him to confirm.
    alert.refresh_from_db()
    state = page_state(alert, police)
    assert [a["answer"] for a in state["answers"]] == ["called_police", "on_my_way"]
    assert all(a["before_duress"] for a in state["answers"])
    assert state["confirm"] and state["my_answer"] == ""
    # Confirming the same answer is recorded (not taken for a second tap), and stops the chain.
    answer_alert(alert, channel="page", answer="called_police", contact=police)
    alert.refresh_from_db()
    assert Acknowledgement.objects.filter(alert=alert, contact=police).count() == 2
    assert alert.state == "acknowledged"
    state = page_state(alert, police)
    assert not state["confirm"] and state["my_answer"] == "called_police"
    assert Delivery.objects.filter(alert=alert, channel="voice", recipient=police.phone, purpose="escalation").count() == 0


def test_a_press_after_duress_raises_a_new_alert_as_after_a_cancel(client, world):
    """Joining the alert cancelled under duress would answer "cancelled" with joined_to,
    where after a real cancel the press opens an alert of its own."""
    answers = []
    for pin in (CANCEL_PIN, DURESS_PIN):
        first_id, first = _press(client, world)
        _post(client, world, f"/alerts/{first_id}/cancel", {"pin": pin})
        again_id, again = _press(client, world)  # (201 asserted there)
        assert again.pk != first.pk
        r = client.get(f"/api/v1/alerts/{again_id}", **world.auth)
        answers.append((r.status_code, {k: v for k, v in r.json().items() if k not in ("id", "client_id", "created_at")},
                        again))
        _post(client, world, f"/alerts/{again_id}/cancel", {"pin": CANCEL_PIN})
    (status_a, body_a, _), (status_b, body_b, _) = answers
    assert status_a == status_b == 200 and body_a == body_b
    assert body_b["joined_to"] is None and body_b["state"] == "open"


def test_only_the_device_key_opens_the_recording_hint_and_it_ends_when_the_association_closes(client, world,
                                                                                            monkeypatch):
    """The station goes on recording and tracking an alert under duress until the
    association closes it: the heartbeat carries which, sealed to its evidence key. To
    anyone without that key the two stories still read the same: the same bytes apart
    from the hint, a hint of the same size, fresh each time."""
    from balise.alerts.actions import resolve_alert
    from balise.evidence.actions import register_device_key
    from balise_evidence import crypto, hint

    key = crypto.DeviceKey.generate()
    register_device_key(world.device, key.public_pem)

    def heartbeat() -> tuple[dict, list[str]]:
        body = json.loads(_heartbeat(client, world, monkeypatch))
        return body, hint.open_hint(key, body.pop("recording_hint"))

    cancelled_id, _ = _press(client, world)
    _post(client, world, f"/alerts/{cancelled_id}/cancel", {"pin": CANCEL_PIN})
    after_cancel, listed_cancel = heartbeat()
    raw_cancel = _heartbeat(client, world, monkeypatch)
    duress_id, duress = _press(client, world)
    _post(client, world, f"/alerts/{duress_id}/cancel", {"pin": DURESS_PIN})
    after_duress, listed_duress = heartbeat()
    raw_duress = _heartbeat(client, world, monkeypatch)

    assert after_cancel == after_duress  # open_alerts, times: nothing else differs
    assert listed_cancel == [] and listed_duress == [duress_id]
    assert len(raw_cancel) == len(raw_duress) and raw_duress != _heartbeat(client, world, monkeypatch)
    sealed = json.loads(raw_duress)["recording_hint"]
    for other in (crypto.DeviceKey.generate(), None):
        try:
            hint.open_hint(other, sealed) if other else hint.open_hint(key, sealed[:-8] + "AAAAAAA=")
        except ValueError:
            continue
        raise AssertionError("the hint opened without the device key")

    resolve_alert(duress, note="closed by the association")
    assert heartbeat()[1] == []

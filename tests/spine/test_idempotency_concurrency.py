"""A device retries the same alert many times at once (flaky network, several paths):
against real `balise serve` processes sharing the database, exactly one alert and one
set of deliveries are written, and every answer names the same alert."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from balise.alerts.actions import create_alert, resolve_alert
from balise.alerts.models import Alert, AlertEvent
from balise.dispatch.models import Delivery, EscalationTimer
from tests.personas import make_world

pytestmark = pytest.mark.django_db(transaction=True)

SERVERS = 3  # separate processes: truly concurrent database connections
CALLERS = 24


def alert_body(client_id: str, kind: str = "emergency") -> dict:
    return {
        "client_id": client_id, "kind": kind, "gesture": "double", "triggered_at": "2026-11-24T18:00:00Z",
        "fixes": [{"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
                   "recorded_at": "2026-11-24T18:00:00Z", "source": "gps"}],
    }


class Response:
    def __init__(self, status: int, text: str):
        self.status_code = status
        self.text = text

    def json(self):
        return json.loads(self.text)


def post_all_at_once(bases: list[str], calls: list[tuple[str, dict]]) -> list[Response]:
    """Each call (token, body) from its own thread on its own open connection, all
    released together."""
    barrier = threading.Barrier(len(calls))

    def call(i: int) -> Response:
        token, body = calls[i]
        url = urlsplit(bases[i % len(bases)])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            conn.connect()
            payload = json.dumps(body)
            barrier.wait()
            conn.request("POST", "/api/v1/alerts", body=payload,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            return Response(r.status, r.read().decode())
        finally:
            conn.close()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, range(len(calls))))


@pytest.fixture
def servers(procs):
    started = [procs.serve(wait=False) for _ in range(SERVERS)]
    for s in started:
        s.wait_ready()
    return [s.base for s in started]


def test_concurrent_retries_create_one_alert_and_one_set_of_deliveries(servers, world):
    reference, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency")
    planned = sorted(Delivery.objects.filter(alert=reference).values_list("recipient", "channel", "purpose"))
    assert len(planned) >= 6
    resolve_alert(reference)  # a press while it is open would join it
    rounds = 4
    for _ in range(rounds):
        client_id = str(uuid.uuid4())
        body = alert_body(client_id)
        responses = post_all_at_once(servers, [(world.token, body)] * CALLERS)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CALLERS - 1) + [201], [r.text for r in responses if r.status_code not in (200, 201)]
        answers = {r.text for r in responses}
        assert len(answers) == 1, answers  # the same alert, the same answer, byte for byte
        alert = Alert.objects.get(client_id=client_id)
        assert responses[0].json()["id"] == alert.pk
        # the same messages as one alert raised alone, once each
        deliveries = sorted(Delivery.objects.filter(alert=alert).values_list("recipient", "channel", "purpose"))
        assert deliveries == planned
        assert alert.fixes.count() == 1
        assert AlertEvent.objects.filter(alert=alert, kind="created").count() == 1
        assert EscalationTimer.objects.filter(alert=alert).count() == 1
        resolve_alert(alert)
    assert Alert.objects.count() == rounds + 1


def test_concurrent_same_client_id_from_two_devices_goes_to_one(servers, world):
    thief = make_world("oise")
    for _ in range(3):
        client_id = str(uuid.uuid4())
        body = alert_body(client_id, kind="prevention")
        calls = [(world.token if i % 2 == 0 else thief.token, body) for i in range(CALLERS)]
        responses = post_all_at_once(servers, calls)
        alert = Alert.objects.get(client_id=client_id)
        winner = world.token if alert.device_id == world.device.pk else thief.token
        for (token, _), r in zip(calls, responses):
            if token == winner:
                assert r.status_code in (200, 201) and r.json()["id"] == alert.pk, r.text
            else:
                assert r.status_code == 409 and r.json()["error"] == "client_id_conflict", r.text
        assert sum(r.status_code == 201 for r in responses) == 1
        assert Delivery.objects.filter(alert=alert).count() == 5
        resolve_alert(alert)  # the next round's press must not join it
    assert Alert.objects.count() == 3

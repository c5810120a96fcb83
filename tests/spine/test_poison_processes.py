"""Poison isolation with real processes: `balise dispatch` and `balise serve` given an
alert whose messages cannot be built, next to good ones. The good ones are delivered,
the poisoned one is set aside and the association's on-call line gets a notice, the
process lives on, and /health tells the truth (200: the failure is reported by the
notice, not by calling the whole service down).

The poison is written below the device API (a delivery with a template no renderer
knows, a fix dated year 9999, and on PostgreSQL year 10000 in UTC); the real year-9999
input is also posted to the API, which may accept it (it must then be sent) or refuse
it with a 422 (another alert must then still go out)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone as dj_timezone

from balise.alerts.models import Alert, LocationFix
from balise.dispatch.messages import UNDELIVERABLE
from balise.dispatch.models import Delivery
from tests.spine.loopback import wait_until
from tests.spine.test_dispatch_faults import raise_alert, webhook_env

pytestmark = pytest.mark.django_db(transaction=True)

YEAR_9999 = datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc)
BEYOND_UTC = datetime(9999, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-14)))  # year 10000 in UTC
NOTICE_FR = "Balise : l'alerte de Camille n'a pas pu etre envoyée à ses proches. Appelez-les vous-meme."
FAULTS = dict(BALISE_DISPATCH_FAULT_ATTEMPTS=3, BALISE_DISPATCH_BACKOFF_BASE=0.05, BALISE_DISPATCH_BACKOFF_MAX=0.2)


def poisoned_alert(world) -> Alert:
    """An alert whose deliveries name a template that no renderer knows: rendering them
    raises, every time. Written in one transaction: no dispatcher sees them before."""
    with transaction.atomic():
        alert = raise_alert(world, "prevention")
        assert Delivery.objects.filter(alert=alert).update(template="no-such-template") >= 4
    return alert


def alert_fixed_in(world, when: datetime) -> Alert | None:
    """A good alert whose latest fix is dated WHEN, written directly (None when the
    database cannot store it)."""
    try:
        with transaction.atomic():
            alert = raise_alert(world)
            LocationFix.objects.create(alert=alert, lat=45.75, lon=4.85, accuracy_m=8, recorded_at=when, source="gps")
    except OverflowError:  # SQLite stores UTC: year 10000 cannot even be written
        assert connection.vendor == "sqlite"
        return None
    return alert


def settled(alerts) -> bool:
    return not Delivery.objects.filter(alert__in=alerts, state__in=["pending", "sending"]).exists()


def check(sink, poisoned, good, world, proc) -> None:
    wait_until(lambda: proc.check_alive() or (settled([poisoned, *good]) and Delivery.objects.filter(
        alert=poisoned, template=UNDELIVERABLE, state="sent").exists()), 60, "the poisoned alert set aside")
    proc.check_alive()
    rows = Delivery.objects.filter(alert__in=good)
    assert set(rows.values_list("state", "faults")) == {("sent", 0)}
    bad = Delivery.objects.filter(alert=poisoned).exclude(template=UNDELIVERABLE)
    assert set(bad.values_list("state", "faults")) == {("failed", 3)}
    assert all("render: ValueError" in e for e in bad.values_list("last_error", flat=True))
    hits = sink.snapshot()
    assert {h.key for h in hits} >= {str(i) for i in rows.values_list("id", flat=True)}
    assert not {h.key for h in hits} & {str(i) for i in bad.values_list("id", flat=True)}
    notices = [h.body for h in hits if h.body["alert_id"] == poisoned.pk]
    assert [(n["to"], n["text"], n["purpose"]) for n in notices] == [
        (world.association.on_call_number, NOTICE_FR, "notice")]


def check_health(get) -> None:
    """200 and the truth: dispatchers alive, nothing waiting, the set-aside rows counted."""
    health = get("/health")
    assert health.status_code == 200, health.content
    assert health.json()["status"] == "ok" and health.json()["dispatchers_alive"] >= 1
    metrics = get("/metrics").content.decode()
    failed = Delivery.objects.filter(state="failed").count()
    assert failed >= 4 and f"balise_deliveries_failed_recent {failed}" in metrics


def test_balise_dispatch_sets_the_poisoned_alert_aside_and_sends_the_others(procs, sinks, world, other_world):
    sink = sinks()
    good = [raise_alert(other_world)]
    poisoned = poisoned_alert(world)
    d = procs.dispatch(**webhook_env(sink.url, **FAULTS))
    good += [raise_alert(world), raise_alert(other_world, "alarm")]
    good += [a for a in (alert_fixed_in(other_world, YEAR_9999), alert_fixed_in(other_world, BEYOND_UTC)) if a]
    check(sink, poisoned, good, world, d)
    texts = [h.body["text"] for h in sink.snapshot() if h.body["alert_id"] == good[3].pk and h.body["channel"] == "sms"]
    assert texts and all("à une heure inconnue" in t for t in texts if t.startswith("ALERTE"))
    check_health(Client(HTTP_HOST="127.0.0.1").get)
    after = [raise_alert(world)]  # the same process goes on
    wait_until(lambda: d.check_alive() or settled(after), 60, "an alert after the poisoned one")
    assert set(Delivery.objects.filter(alert__in=after).values_list("state", flat=True)) == {"sent"}


def test_balise_serve_sets_the_poisoned_alert_aside_and_sends_the_others(procs, sinks, world, other_world):
    sink = sinks()
    server = procs.serve(dispatcher=True, **webhook_env(sink.url, **FAULTS))
    headers = {"Authorization": f"Bearer {world.token}"}

    def post(recorded_at: str) -> httpx.Response:
        body = {"client_id": str(uuid.uuid4()), "kind": "emergency", "gesture": "double",
                "fixes": [{"lat": 45.75, "lon": 4.85, "accuracy_m": 8, "recorded_at": recorded_at}]}
        return httpx.post(f"{server.base}/api/v1/alerts", json=body, headers=headers, timeout=30)

    poisoned = poisoned_alert(world)
    good = [raise_alert(other_world)]
    # The real input, through the API: sent if accepted, refused with 422 otherwise. (Year
    # 10000 in UTC is posted on PostgreSQL only: SQLite cannot store it, and the API's
    # answer to it there is the edge's business.)
    inputs = ["9999-12-31T23:30:00Z"] + (["9999-12-31T20:00:00-14:00"] if connection.vendor == "postgresql" else [])
    for recorded_at in inputs:
        r = post(recorded_at)
        assert r.status_code in (201, 422), r.text
        if r.status_code == 201:
            good.append(Alert.objects.get(pk=r.json()["id"]))
    r = post(dj_timezone.now().isoformat())  # and an ordinary alert after them
    assert r.status_code == 201, r.text
    good.append(Alert.objects.get(pk=r.json()["id"]))
    good += [a for a in (alert_fixed_in(other_world, YEAR_9999), alert_fixed_in(other_world, BEYOND_UTC)) if a]
    check(sink, poisoned, good, world, server)
    check_health(lambda path: httpx.get(f"{server.base}{path}", timeout=10))

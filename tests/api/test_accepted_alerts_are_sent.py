"""Property: any alert the device API accepts (201) is rendered and handed to the
provider. Hypothesis sends fixes and trigger times from anywhere (year 1 to 9999, any
offset up to ±23:59, infinities, positions off the globe); what the edge lets through
must never poison the dispatcher (issue 8: a fix dated 9999-12-31T23:30Z stopped every
association's deliveries)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balise.alerts.actions import resolve_alert
from balise.alerts.models import Alert
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from tests.spine.helpers import RecordingProvider, drain


def _stamp(moment: datetime, offset_minutes: int) -> str:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S').zfill(19)}{sign}{hours:02d}:{minutes:02d}"


offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
# Anywhere in datetime's range, or close to now (where most are accepted).
anytime = st.builds(_stamp, st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), offsets)
recent = st.builds(
    lambda delta, offset: _stamp(timezone.now().replace(tzinfo=None) + timedelta(seconds=delta), offset),
    st.integers(min_value=-3 * 86400, max_value=2 * 86400), offsets,
)
edges = st.sampled_from(["9999-12-31T23:30:00Z", "9999-12-31T23:30:00-14:00", "0001-01-01T00:00:00+14:00",
                         "2020-01-01T00:00:00Z", "2020-01-01T00:00:00+14:00"])
times = st.one_of(recent, recent, anytime, edges)
coordinate = st.one_of(st.floats(min_value=-200, max_value=200), st.floats(), st.integers(-10**6, 10**6))
fixes = st.fixed_dictionaries(
    {"lat": coordinate, "lon": coordinate, "recorded_at": times},
    optional={"accuracy_m": st.one_of(st.none(), st.floats(min_value=-1, max_value=2e5), st.floats()),
              "source": st.sampled_from(["gps", "fixed", "network", "simulated", "unknown"]),
              "id": st.uuids().map(str)},
)
alerts = st.fixed_dictionaries(
    {"kind": st.sampled_from(["prevention", "emergency", "alarm", "test"]),
     "fixes": st.lists(fixes, max_size=3)},
    optional={"gesture": st.sampled_from(["single", "double", "long", "triple", "api", ""]),
              "triggered_at": st.one_of(st.none(), times)},
)


def test_every_accepted_alert_is_rendered_and_handed_to_the_provider(world):
    provider = RecordingProvider()
    dispatcher = Dispatcher(providers=[provider], workers=2)
    client = Client()
    seen = {"accepted": 0, "refused": 0}

    @given(body=alerts)
    @settings(max_examples=80, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    def accepted_alerts_are_sent(body):
        body = {"client_id": str(uuid.uuid4()), **body}
        r = client.post("/api/v1/alerts", data=json.dumps(body), content_type="application/json", **world.auth)
        assert r.status_code in (201, 422), (r.status_code, r.content)
        if r.status_code == 422:
            seen["refused"] += 1
            return
        seen["accepted"] += 1
        alert_id = r.json()["id"]
        sent_before = len(provider.sent)
        drain(dispatcher)
        due = Delivery.objects.filter(alert_id=alert_id, next_attempt_at__lte=timezone.now())
        assert due.exists()
        assert not due.exclude(state=Delivery.State.SENT).exists(), list(due.values("state", "last_error"))
        mine = [m for m in provider.sent[sent_before:] if m.alert_id == alert_id]
        assert sorted(str(m.key) for m in mine) == sorted(str(d.pk) for d in due)
        assert all(m.text.strip() for m in mine)
        # Closed, so that the next press is an alert of its own rather than joining this one.
        resolve_alert(Alert.objects.get(pk=alert_id))

    try:
        accepted_alerts_are_sent()
    finally:
        dispatcher.stop()
    # The strategies reach both sides of the edge.
    assert seen["accepted"] >= 10 and seen["refused"] >= 10, seen

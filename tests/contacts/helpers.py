"""Alerts raised through the real action, a dispatcher driven in-process, and a clock
for escalation timers (their due time is moved, never slept on)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.utils import timezone

from balise.alerts.actions import FixIn, create_alert
from balise.alerts.models import Alert
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery, EscalationTimer
from balise.tracking.shortlinks import short_url
from tests.spine.helpers import RecordingProvider, drain

LYON = (45.7578, 4.8320)


def raise_alert(world, kind: str, *, lat: float = LYON[0], lon: float = LYON[1], accuracy: float = 25.0,
                device=None) -> Alert:
    """An alert of WORLD's person (or of DEVICE's holder: a press while her alert is open
    joins it, so a test that needs two open alerts gives the second its own person)."""
    now = timezone.now()
    alert, created = create_alert(
        device or world.device, client_id=uuid.uuid4(), kind=kind, gesture="api", triggered_at=now,
        fixes=[FixIn(lat=lat, lon=lon, accuracy_m=accuracy, recorded_at=now, source="gps", client_id=uuid.uuid4())],
    )
    assert created
    return alert


def page_link(alert: Alert, contact=None) -> str:
    """The path of a new short link to CONTACT's live page of ALERT (None: the on-call line's),
    as the SMS carry it."""
    return urlsplit(short_url(alert, contact.pk if contact else None)).path


class Rig:
    """A dispatcher with a recording provider."""

    def __init__(self):
        self.provider = RecordingProvider()
        self.dispatcher = Dispatcher(name="test-rig", providers=[self.provider], workers=4)

    def drain(self) -> None:
        drain(self.dispatcher)

    def fire_next_timer(self, alert: Alert) -> bool:
        """Make the alert's pending timer due now and run it; False if there is none."""
        timers = EscalationTimer.objects.filter(alert=alert, state=EscalationTimer.State.PENDING)
        if not timers.exists():
            return False
        timers.update(due_at=timezone.now() - timedelta(seconds=1))
        self.dispatcher.run_due_timers()
        self.drain()
        return True

    def sent(self, alert: Alert | None = None, **filters) -> list:
        rows = [m for m in self.provider.sent if alert is None or m.alert_id == alert.pk]
        return [m for m in rows if all(getattr(m, k) == v for k, v in filters.items())]

    def close(self) -> None:
        self.dispatcher.close()


def deliveries(alert: Alert, **filters):
    return Delivery.objects.filter(alert=alert, **filters)


def signed_post(client, path: str, data: dict, *, as_json: bool = False, secret: bytes | None = None,
                now: float | None = None, sign_path: str | None = None, sign_body: bytes | None = None):
    """POST a provider callback (form or JSON) signed as balise.providers.callbacks says;
    SIGN_PATH / SIGN_BODY sign something other than what is sent."""
    import json
    from urllib.parse import urlencode

    from balise.providers.callbacks import sign

    body = json.dumps(data).encode() if as_json else urlencode(data).encode()
    content_type = "application/json" if as_json else "application/x-www-form-urlencoded"
    headers = sign("POST", sign_path or path, body if sign_body is None else sign_body, secret=secret, now=now)
    return client.post(path, body, content_type=content_type, headers=headers)

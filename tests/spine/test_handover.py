"""An alert's first messages are handed to the dispatcher of the process that committed
it: leased to it in the alert's own transaction and sent at once, without waiting for a
claim, and still sent, with the same idempotency keys, by another dispatcher if that
process dies before sending them."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

from balise.alerts.actions import FixIn, create_alert
from balise.alerts.models import AlertEvent
from balise.dispatch import wakeup
from balise.dispatch.dispatcher import Dispatcher, run_in_thread
from balise.dispatch.models import Delivery
from balise.providers.base import OutgoingMessage, SendResult
from balise.tracking.models import ShortLink
from balise.tracking.shortlinks import read_short_token
from tests.spine.helpers import RecordingProvider, drain
from tests.spine.loopback import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


def raise_alert(world):
    fix = FixIn(lat=45.76, lon=4.83, accuracy_m=12, recorded_at=NOW, source="gps", client_id=uuid.uuid4())
    alert, created = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency", gesture="double", fixes=[fix])
    assert created
    return alert


class HeldProvider(RecordingProvider):
    """Holds every send until released, so the rows can be seen while they are with it."""

    def __init__(self):
        super().__init__("held")
        self.release = threading.Event()

    def send(self, message: OutgoingMessage) -> SendResult:
        self.release.wait(10)
        return super().send(message)


def test_deliveries_are_leased_in_the_alerts_transaction_and_sent_at_once(world):
    provider = HeldProvider()
    dispatcher = Dispatcher(name="in-process", providers=[provider], workers=4)
    thread = run_in_thread(dispatcher)
    try:
        wait_until(lambda: wakeup.local_dispatcher is dispatcher, 5, "the dispatcher to start")
        alert = raise_alert(world)
        rows = list(Delivery.objects.filter(alert=alert))
        assert len(rows) >= 4  # calls and SMS to the consenting contacts
        # already with the provider: leased to this process, first attempt, no claim needed
        assert {(d.state, d.lease_owner, d.attempts) for d in rows} == {("sending", "in-process", 1)}
        # handed to the dispatch loop at commit (the request does not wait for them to be built)
        wait_until(lambda: len(dispatcher.in_flight) == len(rows), 10, "the rows to be with the provider")
        provider.release.set()
        wait_until(lambda: not Delivery.objects.filter(alert=alert).exclude(state="sent").exists(), 10, "sent")
    finally:
        provider.release.set()
        dispatcher.stop()
        thread.join(10)
    assert sorted(m.key for m in provider.sent) == sorted(str(d.id) for d in rows)
    assert all(m.text for m in provider.sent)
    # The SMS carry the links made in the alert's transaction: the dispatcher made none.
    links = [m.text.split("/s/")[1].split()[0] for m in provider.sent if m.channel == "sms"]
    assert links and all(read_short_token(t) for t in links)
    assert ShortLink.objects.filter(alert=alert).count() == len(links)
    assert AlertEvent.objects.filter(alert=alert, kind="delivery_sent").count() == len(rows)
    assert wakeup.local_dispatcher is None


def test_a_hand_over_lost_with_its_process_is_claimed_when_the_lease_expires(world, settings, caplog):
    settings.DISPATCH_LEASE_SECONDS = 0.5
    gone = Dispatcher(name="gone", providers=[RecordingProvider()], workers=1)
    # (the process dies between the commit and the sends: its loop never runs again)
    gone.accepting = True
    wakeup.local_dispatcher = gone
    try:
        alert = raise_alert(world)  # handed over at commit, to a loop that will not take it
    finally:
        wakeup.local_dispatcher = None
    assert not gone.handed.empty() and not gone.in_flight
    rows = {str(d.id): d for d in Delivery.objects.filter(alert=alert)}
    assert {(d.state, d.lease_owner) for d in rows.values()} == {("sending", "gone")}

    provider = RecordingProvider()
    survivor = Dispatcher(name="survivor", providers=[provider], workers=4)
    survivor.tick()
    assert provider.sent == [] and not survivor.in_flight, "not before the lease has expired"
    time.sleep(0.6)
    drain(survivor)
    assert sorted(m.key for m in provider.sent) == sorted(rows), "each sent once, with its own key"
    assert {(d.state, d.attempts) for d in Delivery.objects.filter(alert=alert)} == {("sent", 2)}
    # Their links died with the lost process (only their hashes were stored): new ones, that open her page.
    links = [m.text.split("/s/")[1].split()[0] for m in provider.sent if m.channel == "sms"]
    assert links and all(read_short_token(t).alert_id == alert.pk for t in links)
    survivor._shutdown()  # (as run() does when it stops: its threads give their connections back)

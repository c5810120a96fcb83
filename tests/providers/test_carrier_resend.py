"""An SMS a carrier reports undelivered or failed goes again through the next provider
(balise.dispatch.carrier), once, never through the providers that already failed it."""

from __future__ import annotations

import pytest

from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.inbound.actions import carrier_status
from tests.contacts.helpers import raise_alert
from tests.personas import make_world
from tests.spine.helpers import RecordingProvider, drain

pytestmark = pytest.mark.django_db(transaction=True)


def test_undelivered_goes_through_the_next_provider_once_then_the_plan_alone_goes_on(settings):
    settings.PROVIDERS = ["first", "second"]
    first, second = RecordingProvider("first"), RecordingProvider("second")
    dispatcher = Dispatcher(name="resend-test", providers=[first, second], workers=2)
    try:
        world = make_world(slug="resend", contacts=2)
        alert = raise_alert(world, "prevention")
        drain(dispatcher)
        failed, fine = Delivery.objects.filter(alert=alert, channel="sms").order_by("recipient")
        assert failed.provider == fine.provider == "first" and len(second.sent) == 0

        assert carrier_status(str(fine.pk), status="delivered") == "recorded"
        assert carrier_status(str(failed.pk), status="undelivered", error="30003") == "recorded"
        again = Delivery.objects.get(replaces=failed)
        assert again.avoid_providers == "first" and again.recipient == failed.recipient
        assert not Delivery.objects.filter(replaces=fine).exists()
        # The same news twice re-sends nothing more.
        assert carrier_status(str(failed.pk), status="undelivered") == "unchanged"
        carrier_status(str(failed.pk), status="failed")  # (a later word for the same failure)
        assert Delivery.objects.filter(alert=alert, recipient=failed.recipient, channel="sms").count() == 2
        drain(dispatcher)
        again.refresh_from_db()
        assert again.state == Delivery.State.SENT and again.provider == "second"
        assert [m.to for m in second.sent] == [failed.recipient] and len(first.sent) == 2
        assert second.sent[0].avoid == ("first",)

        # The second provider fails it too: no provider is left, nothing more is written.
        assert carrier_status(str(again.pk), status="failed") == "recorded"
        assert not Delivery.objects.filter(replaces=again).exists()
        assert Delivery.objects.filter(alert=alert, replaces__isnull=False).count() == 1
    finally:
        dispatcher.close()


def test_a_resend_is_not_written_once_the_alert_is_over(settings):
    settings.PROVIDERS = ["first", "second"]
    first = RecordingProvider("first")
    dispatcher = Dispatcher(name="resend-closed", providers=[first, RecordingProvider("second")], workers=2)
    try:
        world = make_world(slug="resendclosed", contacts=1)
        alert = raise_alert(world, "prevention")
        drain(dispatcher)
        (d,) = Delivery.objects.filter(alert=alert, channel="sms")
        alert.state = alert.State.RESOLVED
        alert.save(update_fields=["state"])
        assert carrier_status(str(d.pk), status="undelivered") == "recorded"
        assert not Delivery.objects.filter(replaces=d).exists()
    finally:
        dispatcher.close()


def test_the_first_final_receipt_is_the_message_s(settings):
    settings.PROVIDERS = ["first", "second"]
    dispatcher = Dispatcher(name="resend-final", providers=[RecordingProvider("first"), RecordingProvider("second")],
                            workers=2)
    try:
        world = make_world(slug="resendfinal", contacts=2)
        alert = raise_alert(world, "prevention")
        drain(dispatcher)
        delivered, undelivered = Delivery.objects.filter(alert=alert, channel="sms").order_by("recipient")
        assert carrier_status(str(delivered.pk), status="delivered") == "recorded"
        # A late contrary receipt (another part, a confused aggregator) changes nothing.
        assert carrier_status(str(delivered.pk), status="undelivered", error="30003") == "unchanged"
        delivered.refresh_from_db()
        assert delivered.carrier_state == "delivered" and not Delivery.objects.filter(replaces=delivered).exists()
        assert carrier_status(str(delivered.pk), status="read") == "recorded"

        assert carrier_status(str(undelivered.pk), status="undelivered") == "recorded"
        assert carrier_status(str(undelivered.pk), status="delivered") == "unchanged"
        undelivered.refresh_from_db()
        assert undelivered.carrier_state == "undelivered"
        assert Delivery.objects.filter(replaces=undelivered).count() == 1
    finally:
        dispatcher.close()

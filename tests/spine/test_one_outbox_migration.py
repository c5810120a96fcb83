"""The migrations that fold the messages to contacts and the supervision notices into
the one outbox (dispatch.Delivery) keep every row: a pending invitation is still sent,
with its idempotency key, after the upgrade."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("dispatch", "0003_carrier_state"), ("tracking", "0002_short_links"), ("supervision", "0001_initial")]
AFTER = [("dispatch", "0004_standalone_messages"), ("tracking", "0003_contact_messages_in_the_outbox"),
         ("supervision", "0002_notices_in_the_outbox")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_contact_messages_and_supervision_notices_become_deliveries(world):
    from balise.dispatch.models import Delivery

    Delivery.objects.filter(alert__isnull=True).delete()  # (the world's invitations: the old schema has no place for them)
    old = migrate(BEFORE)
    ContactMessage = old.get_model("tracking", "ContactMessage")
    Notice = old.get_model("supervision", "SupervisionNotice")
    Event = old.get_model("supervision", "SupervisionEvent")
    contact = world.contacts[0]
    now = timezone.now()
    pending = ContactMessage.objects.create(contact_id=contact.pk, template="invitation", state="pending")
    sent = ContactMessage.objects.create(contact_id=contact.pk, template="stepped_down", state="sent", attempts=1,
                                         provider="twilio", provider_ref="SM1", sent_at=now)
    event = Event.objects.create(association_id=world.association.pk, kind="silent", subject=f"device:{world.device.pk}",
                                 device_id=world.device.pk, person_id=world.person.pk, raised_at=now)
    notice = Notice.objects.create(event=event, recipient="+33472000000", next_attempt_at=now, created_at=now)
    try:
        new = migrate(AFTER)
        Delivery = new.get_model("dispatch", "Delivery")
        rows = {str(d.id): d for d in Delivery.objects.filter(alert__isnull=True)}
        invitation, stepped, told = rows[str(pending.id)], rows[str(sent.id)], rows[str(notice.id)]
        assert (invitation.purpose, invitation.state, invitation.recipient) == ("invitation", "pending", contact.phone)
        assert "/c/" in invitation.text and world.person.display_name in invitation.text
        assert (stepped.purpose, stepped.state, stepped.provider_ref) == ("contact_notice", "sent", "SM1")
        assert (told.purpose, told.state, told.recipient) == ("supervision", "pending", "+33472000000")
        assert told.text.startswith("Supervision Balise") and world.device.hardware_id in told.text
        assert new.get_model("supervision", "SupervisionEvent").objects.get(pk=event.pk).notice_id == notice.id
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

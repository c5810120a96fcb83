# Messages to contacts (invitation, stepped down) become rows of the one outbox
# (dispatch.Delivery): every message Balise sends goes through the same table and the
# same dispatcher.

from django.db import migrations

FIELDS = ("id", "attempts", "provider", "provider_ref", "lease_owner", "lease_until", "next_attempt_at",
          "last_error", "created_at", "sent_at", "state", "template")
PURPOSES = {"invitation": "invitation", "stepped_down": "contact_notice"}


def to_outbox(apps, schema_editor):
    from balise.dispatch.messages import render_contact_message
    from balise.tracking.tokens import consent_url

    ContactMessage = apps.get_model("tracking", "ContactMessage")
    Delivery = apps.get_model("dispatch", "Delivery")
    for message in ContactMessage.objects.select_related("contact__person").iterator():
        contact = message.contact
        try:
            text = render_contact_message(message.template, contact, consent_url(contact))
        except Exception:  # (a historical row the words cannot be made of)
            text = f"Balise: {consent_url(contact)}"
        Delivery.objects.create(alert=None, contact=contact, recipient=contact.phone, language=contact.language,
                                channel="sms", purpose=PURPOSES.get(message.template, "contact_notice"), text=text,
                                **{f: getattr(message, f) for f in FIELDS})


class Migration(migrations.Migration):

    dependencies = [
        ('dispatch', '0004_standalone_messages'),
        ('tracking', '0002_short_links'),
    ]

    operations = [
        migrations.RunPython(to_outbox, migrations.RunPython.noop),
        migrations.DeleteModel(
            name='ContactMessage',
        ),
    ]

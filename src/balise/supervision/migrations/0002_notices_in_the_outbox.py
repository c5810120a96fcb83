# Supervision notices become rows of the one outbox (dispatch.Delivery): every message
# Balise sends goes through the same table and the same dispatcher.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FIELDS = ("id", "attempts", "provider", "provider_ref", "lease_owner", "lease_until", "next_attempt_at",
          "last_error", "created_at", "sent_at", "state")


def to_outbox(apps, schema_editor):
    from balise.supervision.messages import notice_text

    Notice = apps.get_model("supervision", "SupervisionNotice")
    Delivery = apps.get_model("dispatch", "Delivery")
    for notice in Notice.objects.select_related("event__device", "event__person", "event__contact").iterator():
        event = notice.event
        try:
            text = notice_text(event)
        except Exception:  # (a historical row the words cannot be made of)
            text = "Balise supervision"
        Delivery.objects.create(alert=None, contact=None, recipient=notice.recipient, language=settings.LANGUAGE_CODE,
                                channel="sms", purpose="supervision", template="supervision", text=text,
                                **{f: getattr(notice, f) for f in FIELDS})
        event.notice_id = notice.id
        event.save(update_fields=["notice"])


class Migration(migrations.Migration):

    dependencies = [
        ('dispatch', '0004_standalone_messages'),
        ('supervision', '0001_initial'),
        # (after the station's report: the notices' words may name a button or a provider)
        ('supervision', '0002_station_provider_reminders'),
    ]

    operations = [
        migrations.AddField(
            model_name='supervisionevent',
            name='notice',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='dispatch.delivery'),
        ),
        migrations.RunPython(to_outbox, migrations.RunPython.noop),
        migrations.DeleteModel(
            name='SupervisionNotice',
        ),
    ]

"""At most one alert a press joins per person (and one test), held by the database.

A press during an open alert of the same person joins it (balise.alerts.actions), but two
first presses arriving at once could each find none and raise two alerts. The two partial
unique constraints below make the second insert fail; create_alert then joins the winner.

A database may already hold several joinable alerts of one person (raised by that race,
or before presses joined open alerts at all), and a unique index cannot be built over
them. Closing the extra ones would silence alerts that may still be going on, and the
migration must not fail on them either. So they are all left going on, exactly as they
were for her contacts, her device and the association, and only the older ones are marked
`superseded`, which takes them out of the constraints: the newest is the one a press
joined before this migration (create_alert picked the highest id) and the only one it
joins after it. Staff close the superseded ones as usual.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, Max, Q

JOINABLE = Q(state__in=("open", "acknowledged"), duress=False, superseded=False)


def supersede_older_duplicates(apps, schema_editor):
    Alert = apps.get_model("alerts", "Alert")
    for tests in (Q(kind="test"), ~Q(kind="test")):
        joinable = Alert.objects.filter(JOINABLE & tests)
        crowded = joinable.values("person_id").annotate(n=Count("id"), newest=Max("id")).filter(n__gt=1)
        for row in crowded:
            joinable.filter(person_id=row["person_id"], id__lt=row["newest"]).update(superseded=True)


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0004_labels'),
        ('associations', '0002_labels'),
        ('devices', '0004_button_seen_at'),
        ('people', '0003_labels'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='alert',
            name='superseded',
            field=models.BooleanField(default=False, verbose_name='superseded by a newer alert of hers'),
        ),
        migrations.RunPython(supersede_older_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.UniqueConstraint(condition=models.Q(('duress', False), ('state__in', ('open', 'acknowledged')), ('superseded', False), models.Q(('kind', 'test'), _negated=True)), fields=('person',), name='one_joinable_alert_per_person'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.UniqueConstraint(condition=models.Q(('duress', False), ('state__in', ('open', 'acknowledged')), ('superseded', False), ('kind', 'test')), fields=('person',), name='one_joinable_test_per_person'),
        ),
    ]

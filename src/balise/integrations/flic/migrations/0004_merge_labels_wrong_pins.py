from django.db import migrations


class Migration(migrations.Migration):
    """The admin labels and the check-in timers' wrong-PIN count, made side by side."""

    dependencies = [
        ("flic", "0003_labels"),
        ("flic", "0003_checkin_wrong_pins"),
    ]

    operations = []

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FlicConfig(AppConfig):
    name = "balise.integrations.flic"
    label = "flic"
    verbose_name = _("Flic buttons")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from balise.dispatch import extra_timers
        from balise.integrations.flic import checkins

        extra_timers.register(checkins.run_due)

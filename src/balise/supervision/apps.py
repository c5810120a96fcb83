from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupervisionConfig(AppConfig):
    name = "balise.supervision"
    label = "supervision"
    verbose_name = _("Supervision")

    def ready(self):
        from balise.dispatch import periodic
        from balise.supervision import runner

        periodic.register("supervision", runner.run, runner.interval)

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.alerts"
    verbose_name = _("Alerts")

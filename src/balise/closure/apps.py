from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ClosureConfig(AppConfig):
    name = "balise.closure"
    label = "closure"
    verbose_name = _("end of protection")

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.voice"
    verbose_name = _("Voice messages")

    def ready(self):
        # The URL providers give for a call's callbacks (balise.providers imports nothing from here).
        from balise.providers import links
        from balise.voice.calls import call_url

        links.call_url_maker = call_url

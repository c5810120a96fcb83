from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.tracking"
    verbose_name = _("Contact pages")

    def ready(self):
        # What the messages of an alert show (balise.dispatch imports nothing from here).
        from balise.dispatch import messages
        from balise.tracking.places import nearest
        from balise.tracking.shortlinks import mint, short_url

        messages.place_finder = nearest
        messages.link_maker = short_url
        messages.links_preparer = mint

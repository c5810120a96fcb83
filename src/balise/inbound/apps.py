from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.inbound"
    verbose_name = _("Replies from contacts")

    def ready(self):
        # The URL providers give for an SMS's delivery reports (balise.providers imports nothing from here).
        from balise.providers import links

        links.status_url_maker = status_url


def status_url(key, site_url: str = "") -> str:
    from django.conf import settings

    from balise.tracking.tokens import make_call_token

    return f"{site_url or settings.SITE_URL}/inbound/status/{make_call_token(key)}"

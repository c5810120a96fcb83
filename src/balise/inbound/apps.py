from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.inbound"
    verbose_name = _("Replies from contacts")

    def ready(self):
        # The URL providers give for an SMS's delivery reports (balise.providers imports nothing from here).
        from balise.inbound import actions
        from balise.providers import events, links

        links.status_url_maker = status_url
        # Receipts and replies heard on a provider's own connection (SMPP) come here.
        events.register(receipt=actions.provider_receipt, incoming=actions.provider_incoming)


def status_url(key, site_url: str = "") -> str:
    from django.conf import settings

    from balise.tracking.tokens import make_call_token

    return f"{site_url or settings.SITE_URL}/inbound/status/{make_call_token(key)}"

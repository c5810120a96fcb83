from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Config(AppConfig):
    name = "balise.inbound"
    verbose_name = _("Replies from contacts")

    def ready(self):
        # Receipts and replies heard on a provider's own connection (SMPP) come here.
        from balise.inbound import actions
        from balise.providers import events

        events.register(receipt=actions.provider_receipt, incoming=actions.provider_incoming)

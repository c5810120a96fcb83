"""An SMS the carrier reports undelivered or failed goes again through the next provider.

The provider took the message but the carrier could not hand it over (a delivery receipt
or a status callback said so): a new delivery of the same message to the same person is
written, with the providers that already failed it set aside (`avoid_providers`); the
dispatcher sends it through the first other provider of BALISE_PROVIDERS. Each failed
delivery is re-sent once at most; when every provider has failed it, nothing more is
written here (the alert's plan goes on: escalation steps, the association's on-call line).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from balise.dispatch import outbox
from balise.dispatch.models import Delivery

log = logging.getLogger(__name__)


def avoided(d: Delivery) -> set[str]:
    return {p for p in d.avoid_providers.split(",") if p}


def resend_elsewhere(d: Delivery, failed_provider: str) -> Delivery | None:
    """The re-send of D (an SMS reported undelivered) through a provider other than
    FAILED_PROVIDER and those D already avoided; None when there is none left, the alert
    is over or D was re-sent already. In the caller's transaction."""
    if d.channel != "sms" or Delivery.objects.filter(replaces=d).exists():
        return None
    avoid = avoided(d) | {failed_provider or d.provider}
    avoid.discard("")
    if not [p for p in settings.PROVIDERS if p not in avoid]:
        log.warning("delivery %s undelivered and no other provider is left to try", d.pk)
        return None
    alert = d.alert  # (None for a message of no alert: an invitation, a supervision notice)
    if alert is not None:
        if d.purpose == Delivery.Purpose.ESCALATION and (d.epoch != alert.epoch or alert.state != alert.State.OPEN):
            return None
        if d.purpose != Delivery.Purpose.NOTICE and not alert.is_active:
            return None
    again = Delivery(
        alert=alert, contact_id=d.contact_id, recipient=d.recipient, language=d.language, channel=d.channel,
        purpose=d.purpose, template=d.template, text=d.text, epoch=d.epoch, replaces=d,
        avoid_providers=",".join(sorted(avoid)),
    )
    try:
        with transaction.atomic():
            outbox.write_rows([again])
    except IntegrityError:  # (re-sent already: a second receipt for the same delivery)
        return None
    log.info("delivery %s undelivered through %s: re-sent as %s, avoiding %s", d.pk, failed_provider or d.provider,
             again.pk, again.avoid_providers)
    return again

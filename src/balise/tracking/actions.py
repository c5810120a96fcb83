"""What trusted contacts do: answer the invitation, step down, answer an alert.

Every acknowledgement channel (live page, SMS reply, keypad, staff) goes through
`answer_alert`, so that all of them stop the escalation the same way and tell the
other contacts that someone is on it.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from balise.alerts.actions import acknowledge_alert, record_event
from balise.alerts.models import Acknowledgement, Alert
from balise.db import for_update
from balise.dispatch import outbox
from balise.dispatch.messages import render_contact_message
from balise.dispatch.models import Delivery
from balise.people.models import Contact
from balise.tracking.tokens import consent_url

log = logging.getLogger(__name__)

CONTACT_ANSWERS = (
    Acknowledgement.Answer.ON_MY_WAY,
    Acknowledgement.Answer.CALLED_POLICE,
    Acknowledgement.Answer.CANNOT_HELP,
)


class NotAllowed(Exception):
    """The answer cannot be taken (alert closed, contact not of this alert)."""


# -- consent ---------------------------------------------------------------------------

def queue_contact_message(contact: Contact, template: str,
                          purpose: str = Delivery.Purpose.CONTACT_NOTICE) -> Delivery:
    """An SMS to CONTACT outside any alert, in the outbox every message goes through
    (its words written now, in her language, with the link to her consent page)."""
    text = render_contact_message(template, contact, consent_url(contact))
    return outbox.write_message(recipient=contact.phone, text=text, purpose=purpose, template=template,
                                language=contact.language, contact=contact)


def invite_contact(contact: Contact) -> Delivery:
    """Queue the invitation SMS: who asks, and a link to the page to accept or decline."""
    return queue_contact_message(contact, "invitation", Delivery.Purpose.INVITATION)


def set_consent(contact: Contact, accept: bool) -> Contact:
    """Accept, decline (before having accepted) or step down (after). Idempotent."""
    with transaction.atomic():
        contact = for_update(Contact.objects).get(pk=contact.pk)
        if accept:
            new = Contact.Consent.ACCEPTED
        elif contact.consent == Contact.Consent.ACCEPTED:
            new = Contact.Consent.WITHDRAWN
        elif contact.consent == Contact.Consent.WITHDRAWN:
            new = Contact.Consent.WITHDRAWN
        else:
            new = Contact.Consent.DECLINED
        if new != contact.consent:
            contact.consent = new
            contact.consent_changed_at = timezone.now()
            contact.save(update_fields=["consent", "consent_changed_at"])
            if new == Contact.Consent.WITHDRAWN:
                queue_contact_message(contact, "stepped_down", Delivery.Purpose.CONTACT_NOTICE)
        return contact


# -- acknowledgement -------------------------------------------------------------------

def answer_alert(alert: Alert, *, channel: str, answer: str = Acknowledgement.Answer.ACKNOWLEDGED,
                 contact: Contact | None = None, staff=None) -> Acknowledgement:
    """Record an answer. The first answer that is not "cannot help" acknowledges the
    alert (its epoch changes: pending escalation is fenced off) and sends a notice to the
    other contacts already reached."""
    if answer not in Acknowledgement.Answer.values:
        raise NotAllowed("unknown answer")
    with transaction.atomic():
        locked = for_update(Alert.objects).select_related("person").get(pk=alert.pk)
        if not locked.is_active:
            raise NotAllowed("the alert is closed")
        if contact is not None and contact.person_id != locked.person_id:
            raise NotAllowed("not a contact of this alert")
        if contact is not None:
            last = locked.acknowledgements.filter(contact=contact).order_by("-at", "-id").first()
            if last is not None and last.answer == answer and not answered_before_duress(locked, last):
                return last  # a second tap, or a provider retrying its callback
        was_open = locked.state == Alert.State.OPEN
        ack = acknowledge_alert(locked, channel=channel, contact=contact, staff=staff, answer=answer)
        if was_open and answer != Acknowledgement.Answer.CANNOT_HELP:
            _tell_the_others(Alert.objects.select_related("person").get(pk=locked.pk), contact)
        return ack


def duress_at(alert: Alert):
    """When the duress PIN was typed on ALERT, or None."""
    if not alert.duress:
        return None
    return alert.events.filter(kind="duress").order_by("at").values_list("at", flat=True).first()


def answered_before_duress(alert: Alert, ack: Acknowledgement, at=None) -> bool:
    """Whether ACK predates the duress PIN: such an answer is kept and shown, and its
    contact is asked to confirm it (the same answer again is then recorded)."""
    at = at if at is not None else duress_at(alert)
    return at is not None and ack.at <= at


def _tell_the_others(alert: Alert, responder: Contact | None) -> None:
    from balise.dispatch.models import Delivery

    reached = set(
        Delivery.objects.filter(alert=alert, state=Delivery.State.SENT, contact__isnull=False)
        .values_list("contact_id", flat=True)
    )
    others = [c for c in alert.person.contacts.all() if c.pk in reached and (responder is None or c.pk != responder.pk)]
    rows = outbox.write_notices(alert, others, "ack")
    record_event(alert, "others_told", contacts=[c.pk for c in others], deliveries=len(rows))

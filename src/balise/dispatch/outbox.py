"""Writing work for the dispatcher: delivery rows and escalation timers.

Every function here runs inside the caller's transaction, so an alert and its work are
committed together or not at all; the dispatchers are woken once it commits.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from balise.dispatch import messages, wakeup
from balise.dispatch.models import Delivery, EscalationTimer
from balise.dispatch.plans import DURESS_QUIET_ANSWERS, Send, plan_for


def recipients(alert, audience: str, rank: int | None = None) -> list[tuple[object | None, str, str]]:
    """(contact or None, phone, language) for an audience of ALERT, or for its RANK-th
    member only (1-based, in the person's order of contacts)."""
    if audience == "on_call":
        number = alert.association.on_call_number
        return [(None, number, "fr")] if number else []
    contacts = list(alert.person.contacts.all())
    if audience == "consenting":
        contacts = [c for c in contacts if c.has_consented]
    if rank is not None:
        contacts = contacts[rank - 1:rank]
    return [(c, c.phone, c.language) for c in contacts]


def not_to_call(alert) -> set[int]:
    """Contacts an alert under duress does not call again: those whose last answer is
    that they called the police. Her association takes the calling over; they still get
    the duress SMS, and their page asks them to confirm (see DURESS_QUIET_ANSWERS)."""
    if not alert.duress:
        return set()
    from balise.alerts.models import Acknowledgement

    last: dict[int, str] = {}
    for contact_id, answer in (Acknowledgement.objects.filter(alert=alert, contact__isnull=False)
                               .order_by("at", "id").values_list("contact_id", "answer")):
        last[contact_id] = answer
    return {c for c, answer in last.items() if answer in DURESS_QUIET_ANSWERS}


def write_deliveries(
    alert, sends: tuple[Send, ...], *, purpose: str, template: str, skip_sms: bool = False,
    skip_sms_to: frozenset[int] = frozenset(), already: frozenset[tuple[str, str]] = frozenset(),
) -> list[Delivery]:
    """SKIP_SMS / SKIP_SMS_TO: the device already texted everyone / these contacts itself;
    ALREADY: (phone, channel) pairs the alert has reached already. Under duress, contacts
    who called the police are not called again (not_to_call)."""
    now = timezone.now()
    rows = []
    seen = set(already)
    quiet = not_to_call(alert) if any(s.channel == "voice" for s in sends) else set()
    for send in sends:
        if skip_sms and send.channel == "sms":
            continue
        for contact, phone, language in recipients(alert, send.audience, send.rank):
            if send.channel == "sms" and contact is not None and contact.pk in skip_sms_to:
                continue
            if send.channel == "voice" and contact is not None and contact.pk in quiet:
                continue
            if (phone, send.channel) in seen:
                continue
            seen.add((phone, send.channel))
            rows.append(
                Delivery(
                    alert=alert, contact=contact, recipient=phone, language=language, channel=send.channel,
                    purpose=purpose, template=template, epoch=alert.epoch, next_attempt_at=now, created_at=now,
                )
            )
    _write(rows, now)
    return rows


def write_notices(alert, contacts, template: str) -> list[Delivery]:
    """An SMS to each of CONTACTS about a change of the alert (cancelled, someone on it)."""
    now = timezone.now()
    rows = [
        Delivery(
            alert=alert, contact=c, recipient=c.phone, language=c.language, channel="sms", purpose="notice",
            template=template, epoch=alert.epoch, next_attempt_at=now, created_at=now,
        )
        for c in contacts
    ]
    _write(rows, now)
    return rows


def write_message(*, recipient: str, text: str, purpose: str, template: str, language: str = "fr",
                  contact=None) -> Delivery:
    """An SMS that belongs to no alert (an invitation, a notice to a contact or to the
    on-call line), its words written now by the app that queues it: the same outbox,
    the same dispatcher, the same leases and retries as an alert's messages."""
    now = timezone.now()
    row = Delivery(alert=None, contact=contact, recipient=recipient, language=language, channel="sms",
                   purpose=purpose, template=template, text=text, next_attempt_at=now, created_at=now)
    _write([row], now)
    return row


def write_rows(rows: list[Delivery]) -> None:
    """Deliveries built elsewhere (balise.dispatch.carrier's re-sends), due now."""
    now = timezone.now()
    for d in rows:
        d.next_attempt_at, d.created_at = now, now
    _write(rows, now)


def _write(rows: list[Delivery], now) -> None:
    """Insert the deliveries; leased to this process's dispatcher and handed to it at
    commit when there is one (see balise.dispatch.wakeup), else left for any to claim."""
    if not rows:
        return
    local = wakeup.local_dispatcher
    if local is None or not local.accepting:
        Delivery.objects.bulk_create(rows)
        wake_dispatchers()
        return
    # The short links their SMS will carry, in the same transaction: one statement here
    # rather than a write transaction of the dispatcher's per batch. Only for rows handed
    # to this process's dispatcher: the links live on these objects (only their hashes
    # are stored), and a dispatcher that claims rows from the database makes its own.
    messages.prepare_links(rows)
    lease_until = now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    for d in rows:
        d.state, d.lease_owner, d.lease_until, d.attempts = Delivery.State.SENDING, local.name, lease_until, 1
    Delivery.objects.bulk_create(rows)
    transaction.on_commit(lambda: local.take(rows))


def arm_next_step(alert) -> EscalationTimer | None:
    """Arm a timer for the alert's next escalation step, if its chain has one."""
    chain = plan_for(alert.association, alert.kind).chain
    if alert.escalation_step >= len(chain):
        return None
    step = chain[alert.escalation_step]
    timer = EscalationTimer.objects.create(
        alert=alert, step=alert.escalation_step, epoch=alert.epoch, due_at=timezone.now() + timedelta(seconds=step.after_s)
    )
    if step.after_s == 0:
        wake_dispatchers()
    return timer


def cancel_pending(alert, purposes: tuple[str, ...]) -> int:
    return Delivery.objects.filter(alert=alert, state=Delivery.State.PENDING, purpose__in=purposes).update(
        state=Delivery.State.CANCELLED, last_error="alert closed before sending"
    )


def wake_dispatchers() -> None:
    """Wake the dispatchers once the current transaction commits."""
    if connection.vendor == "postgresql":
        # NOTIFY inside a transaction is delivered at commit, and dropped on rollback.
        with connection.cursor() as cursor:
            cursor.execute("NOTIFY balise_dispatch")
    transaction.on_commit(wakeup.signal_new_work)

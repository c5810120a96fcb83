"""Sends the messages to contacts that belong to no alert (ContactMessage rows).

The dispatcher runs `run_once` on its thread pool about once per poll interval: rows are
claimed with a lease exactly like deliveries, so a crash between claim and send only
delays a message, and a re-send carries the same idempotency key.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from balise.dispatch import leases
from balise.tracking.models import ContactMessage

log = logging.getLogger(__name__)

BATCH = 20


def _claim(owner: str) -> list[ContactMessage]:
    now = timezone.now()
    # A plain read first: no write transaction (and no SQLite write lock) while idle.
    if not leases.due(ContactMessage, now).exists():
        return []
    with transaction.atomic():
        ids = leases.claim(ContactMessage, owner, BATCH, now)
        if not ids:
            return []
    return list(ContactMessage.objects.filter(id__in=ids, lease_owner=owner).select_related("contact__person"))


def _outgoing(row: ContactMessage):
    from balise.dispatch.messages import render_contact_message
    from balise.providers.base import OutgoingMessage
    from balise.tracking.tokens import consent_url

    contact = row.contact
    text = render_contact_message(row.template, contact, consent_url(contact))
    return OutgoingMessage(key=str(row.id), channel="sms", to=contact.phone, text=text, language=contact.language,
                           alert_id=0, alert_kind="", purpose=row.template)


def run_once(providers, owner: str) -> int:
    """Claim and send the due messages; returns how many were handed to a provider."""
    from balise.dispatch.dispatcher import Job, send_with_failover

    if not connection.in_atomic_block:  # (a caller's transaction, in tests, keeps its connection)
        close_old_connections()
    try:
        rows = _claim(owner)
    except DatabaseError as exc:
        log.warning("contact messages: database error (%s)", type(exc).__name__)
        connection.close()
        return 0
    sent = 0
    for row in rows:
        outcome = send_with_failover(providers, Job(row.id, 0, row.attempts, _outgoing(row)))
        with transaction.atomic():
            written = leases.record_outcomes(ContactMessage, owner, [(row.id, row.attempts, outcome)], timezone.now())
        sent += written.get(row.id) == "sent"
    return sent


class ContactMessageSender:
    """What the dispatcher calls on every tick: runs `run_once` on its own thread (one
    database connection, never the dispatcher's), at most once per poll interval."""

    def __init__(self):
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="balise-contact-sms")
        self.future = None
        self.last = 0.0

    def tick(self, providers, owner: str) -> None:
        now = time.monotonic()
        if (self.future is not None and not self.future.done()) or now - self.last < settings.DISPATCH_POLL_SECONDS:
            return
        self.last = now
        self.future = self.executor.submit(run_once, providers, owner)

    def close(self) -> None:
        # (resolved on the sender's thread: that thread's own connection)
        self.executor.submit(lambda: connection.close())
        self.executor.shutdown(wait=True)

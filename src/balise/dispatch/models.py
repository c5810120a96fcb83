import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from balise.labels import moment


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    VOICE = "voice", _("voice call")


class OutboxMessage(models.Model):
    """What every outbox row has: the attempts, the lease of whoever is sending it, and
    the provider's answer (see balise.dispatch.leases). Its id is the idempotency key."""

    id = models.UUIDField(_("message id"), primary_key=True, default=uuid.uuid4, editable=False)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    provider = models.CharField(_("provider"), max_length=40, blank=True)
    provider_ref = models.CharField(_("provider reference"), max_length=200, blank=True)
    lease_owner = models.CharField(_("taken by the sender"), max_length=80, blank=True)
    lease_until = models.DateTimeField(_("taken until"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        abstract = True


class Delivery(OutboxMessage):
    """One outgoing message to one recipient on one channel: THE outbox. Every message
    Balise sends is a row here, sent by the dispatcher (balise.dispatch.dispatcher):
    an alert's messages (rendered at send time from the alert and its latest fix), and
    messages of no alert (a contact's invitation, the notice that she stepped down, a
    supervision notice to the on-call line), whose words are written with the row
    (`text`) by the app that queues them.

    Its id is the idempotency key handed to providers: a re-send after a crash carries
    the same key, so a provider that saw the first attempt can drop the second.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    class Purpose(models.TextChoices):
        ALERT = "alert", _("alert")
        ESCALATION = "escalation", _("escalation")
        NOTICE = "notice", _("notice")
        # Messages of no alert (their words are in `text`):
        INVITATION = "invitation", _("invitation")
        CONTACT_NOTICE = "contact_notice", _("notice to a contact")
        SUPERVISION = "supervision", _("supervision notice")

    # None for a message of no alert (see Purpose).
    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.CASCADE,
                              related_name="deliveries", null=True,
                              blank=True)
    contact = models.ForeignKey("people.Contact", verbose_name=_("trusted contact"), on_delete=models.SET_NULL,
                                null=True, blank=True)
    recipient = models.CharField(_("recipient"), max_length=20)
    language = models.CharField(_("language"), max_length=5, default="fr")
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices, default=Purpose.ALERT)
    # The message template to render at send time (see balise.dispatch.messages); for a
    # message of no alert, what it is (invitation, stepped_down, supervision).
    template = models.CharField(_("message template"), max_length=40, default="alert")
    # The words of a message of no alert, written by whoever queued it.
    text = models.TextField(_("text"), blank=True)
    # Escalation and notice deliveries only go out while the alert's epoch is this one.
    epoch = models.PositiveIntegerField(_("changes of handling of the alert (counter)"), default=0)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    # Times building or recording this message raised (a fault of the row, not of a
    # provider): after DISPATCH_FAULT_ATTEMPTS it is set aside as failed.
    faults = models.PositiveSmallIntegerField(_("faults"), default=0)
    # What the carrier reported after the provider took the message (status callbacks):
    # SMS queued, sent, delivered, undelivered, failed; call ringing, answered (by a
    # person), voicemail, no_answer, busy, failed. See balise.providers.twilio.
    carrier_state = models.CharField(_("carrier state"), max_length=20, blank=True)
    carrier_error = models.CharField(_("carrier error code"), max_length=20, blank=True)
    carrier_updated_at = models.DateTimeField(_("carrier state updated"), null=True, blank=True)
    # A re-send after a carrier reported this SMS undelivered (balise.dispatch.carrier):
    # the delivery it replaces, and the providers (comma-separated) it must not go through.
    replaces = models.OneToOneField("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resent_as",
                                    verbose_name=_("re-send of"))
    avoid_providers = models.CharField(_("providers set aside"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            models.Index(fields=["state", "lease_until"]),
        ]

    # (Not stored) the short link this SMS carries, made when the row was written or read
    # (messages.prepare_links): only its hash is kept, so it lives on this object.
    page_link = ""

    # Purposes of messages that belong to no alert.
    STANDALONE = (Purpose.INVITATION, Purpose.CONTACT_NOTICE, Purpose.SUPERVISION)

    def __str__(self) -> str:
        words = {"purpose": self.get_purpose_display(), "channel": self.get_channel_display(),
                 "state": self.get_state_display(), "time": moment(self.created_at)}
        if self.contact_id:
            return _("%(purpose)s by %(channel)s to %(contact)s, %(time)s: %(state)s") % {
                **words, "contact": self.contact.name}
        return _("%(purpose)s by %(channel)s, %(time)s: %(state)s") % words


class EscalationTimer(models.Model):
    """A due escalation step, stored as a row so that a restart never loses it."""

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        FIRED = "fired", _("fired")
        STALE = "stale", _("stale")
        FAILED = "failed", _("failed")  # raised DISPATCH_FAULT_ATTEMPTS times (see Delivery.faults)

    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.CASCADE, related_name="timers")
    step = models.PositiveSmallIntegerField(_("escalation step"))
    epoch = models.PositiveIntegerField(_("changes of handling of the alert (counter)"))
    due_at = models.DateTimeField(_("due"))
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    lease_owner = models.CharField(_("taken by the sender"), max_length=80, blank=True)
    lease_until = models.DateTimeField(_("taken until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    fired_at = models.DateTimeField(_("fired"), null=True, blank=True)
    faults = models.PositiveSmallIntegerField(_("faults"), default=0)

    class Meta:
        verbose_name = _("escalation timer")
        verbose_name_plural = _("escalation timers")
        indexes = [models.Index(fields=["state", "due_at"])]

    def __str__(self) -> str:
        return _("step %(step)d of the escalation of %(alert)s, due %(time)s") % {
            "step": self.step + 1, "alert": self.alert, "time": moment(self.due_at)}


class DispatcherBeat(models.Model):
    """Liveness of each dispatcher process, for the health endpoint and for taking over
    the work leased to a dispatcher that stopped beating (see balise.dispatch.leases)."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    started_at = models.DateTimeField(_("started"))
    beat_at = models.DateTimeField(_("last heartbeat"))
    sent = models.PositiveBigIntegerField(_("messages sent"), default=0)
    failed = models.PositiveBigIntegerField(_("messages failed"), default=0)

    class Meta:
        verbose_name = _("sending process")
        verbose_name_plural = _("sending processes")

    def __str__(self) -> str:
        return self.name

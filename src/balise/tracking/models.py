from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from balise.dispatch.models import OutboxMessage


class ContactMessage(OutboxMessage):
    """An SMS to a trusted contact outside any alert (the invitation to accept the role,
    the confirmation of stepping down): a small outbox the dispatcher drains, so that an
    invitation survives a restart or a provider outage like an alert does."""

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    class Template(models.TextChoices):
        INVITATION = "invitation", _("invitation")
        STEPPED_DOWN = "stepped_down", _("stepped down")

    contact = models.ForeignKey("people.Contact", on_delete=models.CASCADE, related_name="messages")
    template = models.CharField(_("message"), max_length=20, choices=Template.choices)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)

    class Meta:
        verbose_name = _("message to a contact")
        verbose_name_plural = _("messages to contacts")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]


class ShortLink(models.Model):
    """The short link of an alert's SMS (/s/<token>, balise.tracking.shortlinks): a
    9-character token standing for one contact's live page of one alert, so that the
    first SMS fits one part and shows no internal id. Only the token's SHA-256 is
    stored; the link stops working when the page's own link would (expires_at)."""

    token_hash = models.CharField(max_length=64, unique=True)
    alert = models.ForeignKey("alerts.Alert", on_delete=models.CASCADE, related_name="short_links")
    contact = models.ForeignKey("people.Contact", on_delete=models.CASCADE, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = _("short link")
        verbose_name_plural = _("short links")

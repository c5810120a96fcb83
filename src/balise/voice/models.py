from django.db import models
from django.utils.translation import gettext_lazy as _


class VoiceMessage(models.Model):
    """The message a person recorded herself, played at the start of her alert calls
    instead of the synthesised one. One per person; a new upload replaces it."""

    person = models.OneToOneField("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                                  related_name="voice_message")
    audio = models.BinaryField(_("audio"))
    content_type = models.CharField(_("format"), max_length=40)
    size = models.PositiveIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    uploaded_at = models.DateTimeField(_("uploaded"), auto_now=True)

    class Meta:
        verbose_name = _("recorded voice message")
        verbose_name_plural = _("recorded voice messages")

    def __str__(self) -> str:
        return _("voice message of %(person)s") % {"person": self.person}

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ShortLink(models.Model):
    """The short link of an alert's SMS (/s/<token>, balise.tracking.shortlinks): a
    9-character token standing for one contact's live page of one alert, so that the
    first SMS fits one part and shows no internal id. Only the token's SHA-256 is
    stored; the link stops working when the page's own link would (expires_at)."""

    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.CASCADE,
                              related_name="short_links")
    contact = models.ForeignKey("people.Contact", verbose_name=_("trusted contact"), on_delete=models.CASCADE,
                                null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))

    class Meta:
        verbose_name = _("short link")
        verbose_name_plural = _("short links")

    def __str__(self) -> str:
        return _("short link to %(alert)s") % {"alert": self.alert}

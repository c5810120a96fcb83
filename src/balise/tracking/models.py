from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from balise.labels import moment
from balise.throttle import Failure


class ShortLink(models.Model):
    """A short link of an alert's SMS (/s/<token>, balise.tracking.shortlinks): a random
    token at which one contact's live page of one alert is served, short enough for the
    first SMS to fit one part, showing no internal id. Only the token's SHA-256 is
    stored; the link stops working at expires_at, or with the page (a while after the
    alert closed)."""

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


class LinkFailure(Failure):
    """A contact page asked for with an unknown or expired short link, kept a while to slow
    down guessing (per source only: a cap on everyone would let anyone shut the contacts
    out of their pages during an alert)."""

    class Meta:
        verbose_name = _("wrong contact link")
        verbose_name_plural = _("wrong contact links")

    def __str__(self) -> str:
        return _("wrong contact link on %(time)s") % {"time": moment(self.at)}

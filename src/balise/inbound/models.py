from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.labels import moment


class SeenSignature(models.Model):
    """A callback signature already accepted: the same request played again is refused.
    Kept for as long as its timestamp would still be accepted (BALISE_INBOUND_MAX_SKEW)."""

    digest = models.CharField(_("signature hash"), max_length=64, primary_key=True)  # SHA-256 of the signature
    seen_at = models.DateTimeField(_("seen"), db_index=True)

    class Meta:
        verbose_name = _("signature already seen")
        verbose_name_plural = _("signatures already seen")

    def __str__(self) -> str:
        return _("signature seen on %(time)s") % {"time": moment(self.seen_at)}

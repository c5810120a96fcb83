from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from balise.labels import moment


class Reason(models.TextChoices):
    ENDED = "ended", _("protection ended")
    MOVED = "moved", _("moved away")
    DECEASED = "deceased", _("deceased")
    WITHDREW = "withdrew", _("withdrew her consent")


class FileClosure(models.Model):
    """The end of a person's protection. Her personal data is erased once `erase_after`
    has passed (balise.closure.actions.erase_due); what stays is anonymous: the person
    row without a name nor codes, her alerts' kinds, times and outcomes."""

    person = models.OneToOneField("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                                  related_name="closure")
    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices)
    closed_at = models.DateTimeField(_("closed"), db_index=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("closed by"), on_delete=models.SET_NULL,
                                  null=True, related_name="+")
    erase_after = models.DateTimeField(_("personal data erased after"), db_index=True)
    erased_at = models.DateTimeField(_("personal data erased"), null=True, blank=True)
    # Set while evidence of hers is under legal hold: the erasure waits for the hold to end.
    held_since = models.DateTimeField(_("erasure held by a legal hold since"), null=True, blank=True)

    class Meta:
        verbose_name = _("closed file")
        verbose_name_plural = _("closed files")

    def __str__(self) -> str:
        return _("file of %(person)s, closed on %(time)s") % {"person": self.person, "time": moment(self.closed_at)}


class Retention(models.Model):
    """How long an association keeps a closed file before erasing its personal data
    (BALISE_RETENTION_DAYS when it has set nothing)."""

    association = models.OneToOneField("associations.Association", verbose_name=_("association"),
                                       on_delete=models.CASCADE, related_name="retention")
    days = models.PositiveIntegerField(_("days kept after closing"))

    class Meta:
        verbose_name = _("retention period")
        verbose_name_plural = _("retention periods")

    def __str__(self) -> str:
        return ngettext("%(association)s: %(days)d day", "%(association)s: %(days)d days", self.days) % {
            "association": self.association, "days": self.days}

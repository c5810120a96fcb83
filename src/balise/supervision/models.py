from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from balise.labels import moment


class SupervisionEvent(models.Model):
    """A technical alarm (EN 50134): something that may stop an alert from going out.
    One row per episode: raised once, cleared when the condition is gone."""

    class Kind(models.TextChoices):
        SILENT = "silent", _("device silent")
        LOW_BATTERY = "low_battery", _("low battery")
        UNDELIVERED = "undelivered", _("messages to a contact undelivered")
        TEST_OVERDUE = "test_overdue", _("periodic test overdue")
        MODEM = "modem", _("modem unusable")
        MICROPHONE = "microphone", _("microphone unusable")
        BUTTON_LOST = "button_lost", _("button disconnected")
        PROVIDER = "provider", _("provider failing")
        # Episodes a station reports once the server hears it again (already over).
        SERVER_UNREACHABLE = "server_unreachable", _("server unreachable from a station")
        ALERT_REFUSED = "alert_refused", _("alerts refused by the server")
        EVIDENCE_REJECTED = "evidence_rejected", _("evidence records refused by the server")
        # Not a technical alarm: the discreet reminder to the person to test her button,
        # open until her test alert arrives (the result) or the next reminder is due.
        TEST_REMINDER = "test_reminder", _("test reminder")

    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.CASCADE, null=True,
                               blank=True, related_name="+")
    contact = models.ForeignKey("people.Contact", verbose_name=_("trusted contact"), on_delete=models.CASCADE,
                                null=True, blank=True, related_name="+")
    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                               null=True, blank=True, related_name="+")
    # What the condition was on: one open episode per (kind, subject).
    subject = models.CharField(_("subject"), max_length=40)
    # What the event is about when no row says it: a button's address, a provider's name.
    detail = models.CharField(_("detail"), max_length=64, blank=True)
    raised_at = models.DateTimeField(_("raised"))
    # The SMS to the on-call line that told of it (a row of the outbox; none when the
    # association has no on-call line).
    notice = models.ForeignKey("dispatch.Delivery", verbose_name=_("notice to the on-call line"),
                               on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+")
    cleared_at = models.DateTimeField(_("cleared"), null=True, blank=True)

    class Meta:
        verbose_name = _("supervision event")
        verbose_name_plural = _("supervision events")
        ordering = ["-raised_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["kind", "subject"], condition=Q(cleared_at__isnull=True),
                                               name="one_open_supervision_episode")]

    def __str__(self) -> str:
        return _("%(kind)s, raised on %(time)s") % {"kind": self.get_kind_display(), "time": moment(self.raised_at)}


class PeriodicTest(models.Model):
    """How a person is reminded to test her button: every `period_days` (empty: the
    default, BALISE_SUPERVISION_TEST_DAYS; 0: never), by a discreet SMS to her own phone."""

    person = models.OneToOneField("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                                  related_name="periodic_test")
    period_days = models.PositiveSmallIntegerField(_("test reminder every (days)"), null=True, blank=True)
    phone = models.CharField(_("her phone, for test reminders"), max_length=20, blank=True)

    class Meta:
        verbose_name = _("periodic test")
        verbose_name_plural = _("periodic tests")

    def __str__(self) -> str:
        return _("test reminders of %(person)s") % {"person": self.person}

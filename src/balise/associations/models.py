from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.dispatch.plans import validate_plans
from balise.people.phones import validate_phone


class Association(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    on_call_number = models.CharField(
        _("on-call number"), max_length=20, blank=True, validators=[validate_phone],
        help_text=_("E.164 number of the association's on-call line; receives tests and final escalations."),
    )
    # Per-kind overrides of the default alert plans (see balise.dispatch.plans).
    alert_plans = models.JSONField(_("alert plans"), default=dict, blank=True, validators=[validate_plans])
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("association")
        verbose_name_plural = _("associations")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("administrator")
        REFERENT = "referent", _("referent")
        WORKER = "worker", _("support worker")
        VIEWER = "viewer", _("read only")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("staff account"), on_delete=models.CASCADE,
                             related_name="memberships")
    association = models.ForeignKey(Association, verbose_name=_("association"), on_delete=models.CASCADE,
                                    related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.WORKER)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("staff membership")
        verbose_name_plural = _("staff memberships")
        constraints = [models.UniqueConstraint(fields=["user", "association"], name="one_membership_per_association")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.association} ({self.get_role_display()})"

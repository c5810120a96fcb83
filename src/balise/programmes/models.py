from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


class Programme(models.Model):
    """A funder's deployment: a region, a prefecture or a department buys devices for
    some victim-support associations, for a period that ends with an evaluation report."""

    class FunderKind(models.TextChoices):
        REGION = "region", _("region")
        PREFECTURE = "prefecture", _("prefecture")
        DEPARTMENT = "department", _("department")
        OTHER = "other", _("other funder")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("short name"), max_length=60, unique=True)
    funder_name = models.CharField(_("funder"), max_length=200)
    funder_kind = models.CharField(_("kind of funder"), max_length=12, choices=FunderKind.choices)
    associations = models.ManyToManyField("associations.Association", related_name="programmes",
                                          verbose_name=_("associations"), blank=True)
    starts_on = models.DateField(_("starts"))
    ends_on = models.DateField(_("ends"))
    device_budget = models.PositiveIntegerField(_("budget of devices"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("programme")
        verbose_name_plural = _("programmes")
        ordering = ["-starts_on", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValidationError({"ends_on": _("The programme cannot end before it starts.")})


class FunderAccess(models.Model):
    """A funder's login to its programme's report. A funder is no member of any
    association: every console page of an association refuses her, and she reads only
    the aggregates of the evaluation report (balise.reports)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("funder's account"), on_delete=models.CASCADE,
                             related_name="funder_accesses")
    programme = models.ForeignKey(Programme, verbose_name=_("programme"), on_delete=models.CASCADE,
                                  related_name="funders")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("funder access")
        verbose_name_plural = _("funder accesses")
        constraints = [models.UniqueConstraint(fields=["user", "programme"], name="one_funder_access_per_programme")]

    def __str__(self) -> str:
        return f"{self.user} → {self.programme}"

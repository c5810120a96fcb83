from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.people.phones import normalize_phone

MAX_CONTACTS = 5


class Language(models.TextChoices):
    FR = "fr", _("French")
    EN = "en", _("English")


class Person(models.Model):
    """A person protected. Only a pseudonymous display name she chooses is kept."""

    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.PROTECT, related_name="people")
    display_name = models.CharField(
        _("display name"), max_length=60,
        help_text=_("The name she chooses to appear in messages to her contacts."),
    )
    language = models.CharField(_("language"), max_length=5, choices=Language.choices, default=Language.FR)
    cancel_pin_hash = models.CharField(_("cancel code (hashed)"), max_length=200, blank=True)
    duress_pin_hash = models.CharField(_("duress code (hashed)"), max_length=200, blank=True)
    # Her own words for the prevention SMS (one SMS part; Balise adds her position and
    # the live link): see balise.integrations.flic.forms.
    prevention_text = models.CharField(_("prevention message"), max_length=160, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("person protected")
        verbose_name_plural = _("people protected")

    def __str__(self) -> str:
        return self.display_name

    def clean(self):
        # Her alerts go to her devices' association (see Device.clean).
        if self.pk is not None and self.association_id is not None \
                and self.devices.exclude(association_id=self.association_id).exists():
            raise ValidationError({"association": _("She holds a device of another association: take it back first.")},
                                  code="device_of_another_association")

    def set_pins(self, cancel_pin: str, duress_pin: str) -> None:
        if cancel_pin == duress_pin:
            raise ValidationError(_("The duress code must differ from the cancel code."), code="same_pins")
        self.cancel_pin_hash = make_password(cancel_pin)
        self.duress_pin_hash = make_password(duress_pin)

    def match_pin(self, pin: str) -> str | None:
        """Return "cancel", "duress" or None. Both hashes are always checked, so timing
        does not tell which one matched."""
        cancel = bool(self.cancel_pin_hash) and check_password(pin, self.cancel_pin_hash)
        duress = bool(self.duress_pin_hash) and check_password(pin, self.duress_pin_hash)
        if duress:
            return "duress"
        if cancel:
            return "cancel"
        return None

    def is_duress_pin(self, pin: str) -> bool:
        return bool(self.duress_pin_hash) and check_password(pin, self.duress_pin_hash)


class Contact(models.Model):
    class Consent(models.TextChoices):
        PENDING = "pending", _("invited, no answer yet")
        ACCEPTED = "accepted", _("accepted")
        DECLINED = "declined", _("declined")
        WITHDRAWN = "withdrawn", _("stepped down")

    person = models.ForeignKey(Person, verbose_name=_("person protected"), on_delete=models.CASCADE,
                               related_name="contacts")
    position = models.PositiveSmallIntegerField(_("order"))
    name = models.CharField(_("name"), max_length=80)
    phone = models.CharField(_("phone"), max_length=20)
    language = models.CharField(_("language"), max_length=5, choices=Language.choices, default=Language.FR)
    consent = models.CharField(_("consent"), max_length=12, choices=Consent.choices, default=Consent.PENDING)
    consent_changed_at = models.DateTimeField(_("consent changed"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("trusted contact")
        verbose_name_plural = _("trusted contacts")
        ordering = ["person", "position"]
        constraints = [
            models.UniqueConstraint(fields=["person", "position"], name="one_contact_per_position"),
            models.UniqueConstraint(fields=["person", "phone"], name="one_contact_per_phone"),
            models.CheckConstraint(
                condition=models.Q(position__gte=1, position__lte=MAX_CONTACTS), name="contact_position_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.position})"

    def clean(self):
        errors = {}
        try:
            self.phone = normalize_phone(self.phone or "")
        except ValidationError as exc:
            errors["phone"] = exc.messages
        if self.person_id is not None:
            others = Contact.objects.filter(person_id=self.person_id).exclude(pk=self.pk)
            if self._state.adding and others.count() >= MAX_CONTACTS:
                errors["__all__"] = [_("A person can have at most %(max)d trusted contacts.") % {"max": MAX_CONTACTS}]
            elif self.phone and others.filter(phone=self.phone).exists():
                errors["phone"] = [_("This number is already one of her contacts.")]
        if errors:
            raise ValidationError(errors)

    @property
    def has_consented(self) -> bool:
        return self.consent == self.Consent.ACCEPTED

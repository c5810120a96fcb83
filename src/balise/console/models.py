from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.labels import moment, staff_name
from balise.throttle import Failure


class AuditEntry(models.Model):
    """Who looked at or changed what, and when: every view of a person's file and every
    change made from the console. Append-only; read by the association's administrators."""

    class Action(models.TextChoices):
        VIEW_PERSON = "view_person", _("viewed the file")
        VIEW_ALERT = "view_alert", _("viewed the alert")
        ENROL = "enrol", _("enrolled the person")
        EDIT_PERSON = "edit_person", _("changed her details")
        SET_PINS = "set_pins", _("set her codes")
        ADD_CONTACT = "add_contact", _("added a contact")
        RESEND_INVITATION = "resend_invitation", _("sent the invitation again")
        TAKE_CHARGE = "take_charge", _("took charge of an alert")
        NOTE = "note", _("wrote a note")
        CLOSE = "close", _("closed an alert")
        PAIRING_CODE = "pairing_code", _("created a pairing code")
        REVOKE = "revoke", _("revoked a device")
        REVOKE_EVIDENCE_KEY = "revoke_evidence_key", _("revoked a device's evidence key")
        # Made in the Django admin (balise.console.admin_audit).
        ADMIN_ADD = "admin_add", _("added in the back-office")
        ADMIN_CHANGE = "admin_change", _("changed in the back-office")
        ADMIN_DELETE = "admin_delete", _("deleted in the back-office")
        ADMIN_ACTION = "admin_action", _("ran a back-office action")

    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("staff member"), on_delete=models.SET_NULL,
                             null=True, related_name="+")
    at = models.DateTimeField(_("date and time"), auto_now_add=True, db_index=True)
    action = models.CharField(_("action"), max_length=24, choices=Action.choices)
    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.SET_NULL,
                               null=True, blank=True, related_name="+")
    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+")
    # A few plain words about what changed (never a PIN, a token or a phone number).
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    # Of an entry made in the Django admin: the model ("app_label.model") of the object
    # (DETAIL is its name) and Django's change message, put in words when read.
    model = models.CharField(_("kind of record"), max_length=100, blank=True)
    changes = models.JSONField(_("changes"), default=list, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        ordering = ["-at", "-id"]

    # What a change of her details names in DETAIL (balise.console.actions), in words.
    CHANGED = {"display_name": _("her name"), "language": _("her language"),
               "protection": _("her protection dates"), "periodic test": _("her periodic tests")}

    def detail_text(self) -> str:
        if self.model:
            from balise.console.admin_audit import describe

            return describe(self)
        if self.action != self.Action.EDIT_PERSON or not self.detail:
            return self.detail
        return ", ".join(str(self.CHANGED.get(part, part)) for part in self.detail.split(", "))

    def __str__(self) -> str:
        return _("%(time)s: %(user)s %(action)s") % {
            "time": moment(self.at), "user": staff_name(self.user), "action": self.get_action_display()}

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)


class PersonNote(models.Model):
    """A note of the association about a person (not about one alert)."""

    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                               related_name="console_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("author"), on_delete=models.SET_NULL,
                               null=True, related_name="+")
    at = models.DateTimeField(_("date and time"), auto_now_add=True)
    text = models.TextField(_("note"), max_length=4000)

    class Meta:
        verbose_name = _("note")
        verbose_name_plural = _("notes")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return _("note of %(time)s about %(person)s") % {"time": moment(self.at), "person": self.person}


class Protection(models.Model):
    """The start and end of a person's protection by the association."""

    person = models.OneToOneField("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                                  related_name="protection")
    starts_on = models.DateField(_("protection starts"), null=True, blank=True)
    ends_on = models.DateField(_("protection ends"), null=True, blank=True)

    class Meta:
        verbose_name = _("protection period")
        verbose_name_plural = _("protection periods")

    def __str__(self) -> str:
        return _("protection of %(person)s") % {"person": self.person}


class PairingCode(models.Model):
    """A one-time code that a device exchanges for its token (POST /api/v1/pair).

    Only a keyed hash of the code is stored; it works once, before `expires_at`."""

    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.CASCADE,
                               related_name="pairing_codes")
    code_hash = models.CharField(_("code hash"), max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("created by"), on_delete=models.SET_NULL,
                                   null=True, related_name="+")
    created_at = models.DateTimeField(_("created"))
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("pairing code")
        verbose_name_plural = _("pairing codes")

    def __str__(self) -> str:
        return _("pairing code for %(device)s, created on %(time)s") % {
            "device": self.device, "time": moment(self.created_at)}


class PairingFailure(Failure):
    """A wrong pairing code, kept a while to slow down guessing (per source and overall)."""

    class Meta:
        verbose_name = _("wrong pairing code")
        verbose_name_plural = _("wrong pairing codes")

    def __str__(self) -> str:
        return _("wrong pairing code on %(time)s") % {"time": moment(self.at)}

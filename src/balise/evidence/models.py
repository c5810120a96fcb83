"""Evidence data. Records, log entries and custody records are append-only: a saved row
is never updated nor deleted (destroying a case drops the stored ciphertexts and the
case key in one deliberate query; headers, hashes, log and custody remain)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.labels import moment
from balise_evidence.canonical import ZERO_HASH


class AppendOnly(models.Model):
    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError(f"{type(self).__name__} rows are append-only")


class DeviceKey(models.Model):
    """A device's evidence signing key (ECDSA P-256), registered at enrolment."""

    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.PROTECT,
                               related_name="evidence_keys")
    public_key_pem = models.TextField(_("public key"))
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    registered_at = models.DateTimeField(_("registered"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("device signing key")
        verbose_name_plural = _("device signing keys")

    def __str__(self) -> str:
        return _("signing key of %(device)s") % {"device": self.device}


class Case(models.Model):
    """One recording session and everything kept about it."""

    class State(models.TextChoices):
        ACTIVE = "active", _("active")
        SEALED = "sealed", _("sealed")
        RETAINED = "retained", _("retained")
        LEGAL_HOLD = "legal_hold", _("legal hold")
        DELETION_PENDING = "deletion_pending", _("deletion pending")
        DESTROYED = "destroyed", _("destroyed")

    class Recording(models.TextChoices):
        RECORDING = "recording", _("recording")
        CLOSED = "closed", _("closed")
        TRUNCATED = "truncated", _("truncated")

    reference = models.CharField(_("reference"), max_length=32, unique=True)
    session = models.UUIDField(_("session"), unique=True)
    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.PROTECT, related_name="evidence_cases")
    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.PROTECT,
                               related_name="evidence_cases")
    device_key = models.ForeignKey(DeviceKey, verbose_name=_("device signing key"), on_delete=models.PROTECT,
                                   related_name="cases")
    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.PROTECT,
                               null=True, blank=True, related_name="evidence_cases")
    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="evidence_cases")
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.ACTIVE)
    recording = models.CharField(_("recording"), max_length=12, choices=Recording.choices, default=Recording.RECORDING)
    wrapped_key = models.BinaryField(_("case key (wrapped)"), null=True, editable=False)
    key_destroyed_at = models.DateTimeField(_("key destroyed"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened"), auto_now_add=True)
    last_record_at = models.DateTimeField(_("last record received"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    truncated_at = models.DateTimeField(_("truncation notice"), null=True, blank=True)
    deletion_due_at = models.DateTimeField(_("deletion due"), null=True, blank=True)
    state_before_deletion = models.CharField(_("state before the deletion was asked"), max_length=20, blank=True)
    segments = models.PositiveIntegerField(_("segments"), default=0)
    log_index = models.IntegerField(_("last session log entry"), default=-1)
    log_head = models.CharField(_("session log head (hash)"), max_length=64, default=ZERO_HASH)
    custody_index = models.IntegerField(_("last custody record"), default=-1)
    custody_head = models.CharField(_("custody log head (hash)"), max_length=64, default=ZERO_HASH)

    class Meta:
        verbose_name = _("evidence case")
        verbose_name_plural = _("evidence cases")
        indexes = [models.Index(fields=["recording", "last_record_at"]), models.Index(fields=["state", "deletion_due_at"])]

    def __str__(self) -> str:
        return self.reference


class Record(AppendOnly):
    """A record as the device signed it; a segment's ciphertext as received, sealed
    again under the case key."""

    case = models.ForeignKey(Case, verbose_name=_("evidence case"), on_delete=models.PROTECT, related_name="records")
    seq = models.PositiveIntegerField(_("sequence number"))
    kind = models.CharField(_("kind"), max_length=8)
    header = models.BinaryField(_("signed header"))
    header_sha256 = models.CharField(_("header hash"), max_length=64)
    signature = models.BinaryField(_("signature"))
    blob = models.BinaryField(_("ciphertext"), null=True)
    cipher_sha256 = models.CharField(_("ciphertext hash"), max_length=64, blank=True)
    conflict = models.BooleanField(_("second version"), default=False)
    received_at = models.DateTimeField(_("time received"), auto_now_add=True)

    class Meta:
        verbose_name = _("evidence record")
        verbose_name_plural = _("evidence records")
        constraints = [models.UniqueConstraint(fields=["case", "header_sha256"], name="evidence_record_once")]
        indexes = [models.Index(fields=["case", "seq"])]

    def __str__(self) -> str:
        return _("%(case)s, record %(seq)d") % {"case": self.case, "seq": self.seq}


class LogEntry(AppendOnly):
    """The session log: every receipt and truncation notice, hash-chained and signed."""

    case = models.ForeignKey(Case, verbose_name=_("evidence case"), on_delete=models.PROTECT, related_name="log")
    index = models.PositiveIntegerField(_("index"))
    kind = models.CharField(_("kind"), max_length=12)
    record = models.ForeignKey(Record, verbose_name=_("evidence record"), on_delete=models.PROTECT, null=True,
                               related_name="receipts")
    data = models.BinaryField(_("signed data"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    signature = models.BinaryField(_("signature"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("session log entry")
        verbose_name_plural = _("session log entries")
        constraints = [models.UniqueConstraint(fields=["case", "index"], name="evidence_log_index_once")]

    def __str__(self) -> str:
        return _("%(case)s, log entry %(index)d") % {"case": self.case, "index": self.index}


class CustodyRecord(AppendOnly):
    """Who accessed the case, when, why, under which legal reference: written before the access."""

    case = models.ForeignKey(Case, verbose_name=_("evidence case"), on_delete=models.PROTECT, related_name="custody")
    index = models.PositiveIntegerField(_("index"))
    action = models.CharField(_("action"), max_length=24)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("staff member"), on_delete=models.PROTECT,
                              null=True, blank=True)
    actor_label = models.CharField(_("by"), max_length=150)
    reason = models.TextField(_("reason"))
    legal_reference = models.CharField(_("legal reference"), max_length=200, blank=True)
    data = models.BinaryField(_("signed data"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    signature = models.BinaryField(_("signature"))
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("custody record")
        verbose_name_plural = _("custody records")
        constraints = [models.UniqueConstraint(fields=["case", "index"], name="evidence_custody_index_once")]

    def __str__(self) -> str:
        return _("%(case)s, access by %(actor)s on %(time)s") % {
            "case": self.case, "actor": self.actor_label, "time": moment(self.at)}


class TimestampToken(AppendOnly):
    """An RFC 3161 token from the configured authority on a log entry."""

    case = models.ForeignKey(Case, verbose_name=_("evidence case"), on_delete=models.PROTECT, related_name="timestamps")
    log_index = models.PositiveIntegerField(_("session log entry"))
    token = models.BinaryField(_("RFC 3161 token"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("timestamp")
        verbose_name_plural = _("timestamps")

    def __str__(self) -> str:
        return _("%(case)s, timestamp of log entry %(index)d") % {"case": self.case, "index": self.log_index}


class ServerKey(models.Model):
    """Every server key the platform has used for evidence (signing, export, seal), so
    that past cases still export and verify after a rotation. The private key is kept
    wrapped under the master key (a retired seal key still opens its past sessions; a
    retired signing key introduces its successor in the key log)."""

    role = models.CharField(_("role"), max_length=12)
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    public_pem = models.TextField(_("public key"))
    private_wrapped = models.BinaryField(_("private key (wrapped)"), editable=False)
    created_at = models.DateTimeField(_("in use since"), auto_now_add=True)
    retired_at = models.DateTimeField(_("retired"), null=True, blank=True)

    class Meta:
        verbose_name = _("server evidence key")
        verbose_name_plural = _("server evidence keys")

    def __str__(self) -> str:
        return _("server key %(fingerprint)s…") % {"fingerprint": self.fingerprint[:16]}


class KeyLogEntry(AppendOnly):
    """The platform's signed, append-only key log (published at /api/v1/evidence/key-log)."""

    index = models.PositiveIntegerField(_("index"), unique=True)
    role = models.CharField(_("role"), max_length=12)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    data = models.BinaryField(_("signed data"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    signature = models.BinaryField(_("signature"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("key log entry")
        verbose_name_plural = _("key log entries")
        constraints = [models.UniqueConstraint(fields=["role", "fingerprint"], name="evidence_keylog_key_once")]

    def __str__(self) -> str:
        return _("key log entry %(index)d") % {"index": self.index}

import hashlib

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values: a plain SHA-256 is enough and allows an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


class Device(models.Model):
    class Kind(models.TextChoices):
        STATION = "station", _("home station")
        PHONE = "phone", _("phone app")
        BUTTON = "button", _("press/release button")
        TAG = "tag", _("press-only tag")
        FLIC = "flic", _("self-decoding button")
        VIRTUAL = "virtual", _("virtual button")

    class Status(models.TextChoices):
        STOCK = "stock", _("in stock")
        ASSIGNED = "assigned", _("handed over")
        RETURNED = "returned", _("returned")
        LOST = "lost", _("lost")
        RETIRED = "retired", _("retired")

    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.PROTECT, related_name="devices")
    holder = models.ForeignKey(
        "people.Person", on_delete=models.SET_NULL, null=True, blank=True, related_name="devices",
        verbose_name=_("holder"),
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    hardware_id = models.CharField(_("hardware id"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.STOCK)
    battery_percent = models.PositiveSmallIntegerField(_("battery"), null=True, blank=True)
    button_connected = models.BooleanField(_("button connected"), null=True, blank=True)
    station_version = models.CharField(_("station version"), max_length=40, blank=True)
    # What a station said of itself in its last heartbeat ("" when it said nothing):
    # its GSM modem and its microphone ("ok", "unusable", "absent"), and each button it
    # listens to: [{"hardware_id": "AA:BB:…", "connected": false, "since": "<iso time>"}],
    # `since` being when that button last connected or dropped.
    modem_state = models.CharField(_("modem"), max_length=10, blank=True)
    microphone_state = models.CharField(_("microphone"), max_length=10, blank=True)
    buttons_state = models.JSONField(_("buttons"), default=list, blank=True)
    # The last heartbeat that said its button was connected: for a device that reports
    # only `button_connected` (a phone), the start of a disconnection (supervision).
    button_seen_at = models.DateTimeField(_("button last seen connected"), null=True, blank=True)
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("device")
        verbose_name_plural = _("devices")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.hardware_id}"

    def clean(self):
        # Her alerts go to the device's association: a device of one association never
        # carries a person of another.
        if self.holder_id is not None and self.association_id is not None \
                and self.holder.association_id != self.association_id:
            raise ValidationError({"holder": _("This person is followed by another association than the device.")},
                                  code="other_association")


class DeviceCredential(models.Model):
    device = models.ForeignKey(Device, verbose_name=_("device"), on_delete=models.CASCADE, related_name="credentials")
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    # The first characters of the token, to tell credentials apart without revealing them.
    prefix = models.CharField(_("start of the token"), max_length=8)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("device credential")
        verbose_name_plural = _("device credentials")

    def __str__(self) -> str:
        return f"{self.prefix}…"

from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.alerts.models import Kind
from balise.labels import moment


class ClickType(models.TextChoices):
    """What the Flic app decodes and sends as `clickType`."""

    CLICK = "click", _("single press")
    DOUBLE_CLICK = "double_click", _("double press")
    HOLD = "hold", _("long press")


class BatteryStatus(models.TextChoices):
    UNKNOWN = "unknown", _("unknown")
    LOW = "low", _("low")
    MEDIUM = "medium", _("medium")
    HIGH = "high", _("high")


class FlicSettings(models.Model):
    """How an association's Flic tokens are verified and what each gesture raises."""

    class Algorithm(models.TextChoices):
        ES256 = "ES256", _("ES256: Flic's signature, verified with a public key")
        HS256 = "HS256", _("HS256: a shared secret (BALISE_FLIC_SECRET_<SLUG>)")

    association = models.OneToOneField(
        "associations.Association", on_delete=models.CASCADE, related_name="flic_settings",
        verbose_name=_("association"),
    )
    algorithm = models.CharField(_("signature"), max_length=5, choices=Algorithm.choices, default=Algorithm.ES256)
    public_key = models.TextField(
        _("webhook public key (PEM)"), blank=True,
        help_text=_("ES256 only. Empty: the key Flic publishes for its webhook requests."),
    )
    webview_public_key = models.TextField(
        _("page public key (PEM)"), blank=True,
        help_text=_("ES256 only. Empty: the key Flic publishes for its webview requests."),
    )
    click_kind = models.CharField(_("single press raises"), max_length=12, choices=Kind.choices, default=Kind.PREVENTION)
    double_click_kind = models.CharField(_("double press raises"), max_length=12, choices=Kind.choices,
                                         default=Kind.EMERGENCY)
    hold_kind = models.CharField(_("long press raises"), max_length=12, choices=Kind.choices, default=Kind.ALARM)
    notification_text = models.CharField(
        _("notification text"), max_length=100, blank=True,
        help_text=_("Shown by the Flic app after each press. Leave empty: a notification may be read by someone "
                    "else. If you set one, keep it neutral."),
    )

    class Meta:
        verbose_name = _("Flic settings")
        verbose_name_plural = _("Flic settings")

    def __str__(self) -> str:
        return str(self.association)

    def kind_for(self, click_type: str) -> str:
        return {
            ClickType.CLICK: self.click_kind,
            ClickType.DOUBLE_CLICK: self.double_click_kind,
            ClickType.HOLD: self.hold_kind,
        }[click_type]


class FlicButton(models.Model):
    """What Balise knows of a Flic button beyond its device row (whose hardware id is
    the button's serial number): its uuid, health, last press and last known position."""

    device = models.OneToOneField("devices.Device", on_delete=models.CASCADE, related_name="flic",
                                  verbose_name=_("device"))
    uuid = models.CharField(_("Flic uuid"), max_length=64, null=True, blank=True, unique=True)
    battery_status = models.CharField(_("battery"), max_length=8, choices=BatteryStatus.choices,
                                      default=BatteryStatus.UNKNOWN)
    last_pressed_at = models.DateTimeField(_("last press"), null=True, blank=True)
    last_click_type = models.CharField(_("last gesture"), max_length=12, choices=ClickType.choices, blank=True)
    last_test_at = models.DateTimeField(_("last test"), null=True, blank=True)
    # The phone's last position, from a press with CLOUD_LOCATION: a check-in timer that
    # fires uses it.
    last_lat = models.FloatField(_("last latitude"), null=True, blank=True)
    last_lon = models.FloatField(_("last longitude"), null=True, blank=True)
    last_accuracy_m = models.FloatField(_("accuracy of the last position (m)"), null=True, blank=True)
    last_located_at = models.DateTimeField(_("last position"), null=True, blank=True)
    # The private link to her page (only its hash is kept).
    page_token_hash = models.CharField(_("page link hash"), max_length=64, blank=True, db_index=True)

    class Meta:
        verbose_name = _("Flic button")
        verbose_name_plural = _("Flic buttons")

    def __str__(self) -> str:
        return self.device.hardware_id


class CheckIn(models.Model):
    """"If I have not confirmed by 23:00, send a prevention alert with my last position":
    a timer row, fired by the dispatchers (see balise.integrations.flic.checkins)."""

    class State(models.TextChoices):
        PENDING = "pending", _("running")
        RUNNING = "running", _("firing")
        CONFIRMED = "confirmed", _("confirmed")
        FIRED = "fired", _("alert sent")

    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.CASCADE,
                               related_name="checkins")
    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.CASCADE,
                               related_name="checkins")
    due_at = models.DateTimeField(_("due"))
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    lease_owner = models.CharField(_("taken by the sender"), max_length=80, blank=True)
    lease_until = models.DateTimeField(_("taken until"), null=True, blank=True)
    alert = models.ForeignKey("alerts.Alert", verbose_name=_("alert"), on_delete=models.SET_NULL, null=True, blank=True)
    # Wrong PINs typed to stop it (see checkins.confirm): limited like the cancel PIN.
    wrong_pins = models.PositiveSmallIntegerField(_("wrong codes"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("check-in timer")
        verbose_name_plural = _("check-in timers")
        indexes = [models.Index(fields=["state", "due_at"])]

    def __str__(self) -> str:
        return _("check-in of %(person)s due %(time)s") % {"person": self.person, "time": moment(self.due_at)}

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from balise.labels import moment


class Kind(models.TextChoices):
    PREVENTION = "prevention", _("prevention")
    EMERGENCY = "emergency", _("emergency")
    ALARM = "alarm", _("alarm")
    TEST = "test", _("test")


class Outcome(models.TextChoices):
    """How the association closed an alert."""

    FALSE_ALARM = "false_alarm", _("false alarm")
    HANDLED_BY_CONTACTS = "contacts", _("handled by her contacts")
    POLICE_CALLED = "police", _("police called")
    PERSON_SAFE = "safe", _("she is safe")
    OTHER = "other", _("other")


# Alert.State.OPEN and ACKNOWLEDGED: the alerts still going on (Meta cannot name Alert.State).
ACTIVE_STATES = ("open", "acknowledged")

# The alerts a new press of the same person joins instead of raising one of her own
# (balise.alerts.actions.create_alert): going on, not cancelled under duress (to her device
# a duress alert was cancelled: a press after it raises a new alert, as after a cancel),
# not superseded. A test joins only a test, a real alert only a real one: at most one of
# each per person, which the two constraints on Alert hold even for simultaneous presses.
JOINABLE = Q(state__in=ACTIVE_STATES, duress=False, superseded=False)


class Alert(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("open")
        ACKNOWLEDGED = "acknowledged", _("acknowledged")
        RESOLVED = "resolved", _("resolved")
        CANCELLED = "cancelled", _("cancelled")

    client_id = models.UUIDField(_("alert id given by the device"), unique=True)
    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.PROTECT,
                               related_name="alerts")
    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.PROTECT,
                               related_name="alerts")
    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    gesture = models.CharField(_("gesture"), max_length=10, blank=True)
    state = models.CharField(_("state"), max_length=12, choices=State.choices, default=State.OPEN)
    # Fencing token: bumped by every acknowledgement, cancel and resolution, so that
    # timers and escalation deliveries written before it become no-ops.
    epoch = models.PositiveIntegerField(_("changes of handling (counter)"), default=0)
    duress = models.BooleanField(_("cancelled under duress"), default=False)
    # Set only by migration 0005 on the older of several joinable alerts of one person
    # raised before the constraints below existed: still going on for her contacts, but
    # no longer joined by her presses (the newest one was, and still is).
    superseded = models.BooleanField(_("superseded by a newer alert of hers"), default=False)
    record = models.BooleanField(_("recording requested"), default=False)
    sms_sent_by_device = models.BooleanField(_("SMS already sent by the device"), default=False)
    # Raised beyond the device's or the association's alert budget (balise.alerts.budget):
    # stored and sent to the association's on-call line, not to the contacts.
    over_budget = models.BooleanField(_("over the alert budget"), default=False)
    # Index of the next step of the escalation chain.
    escalation_step = models.PositiveSmallIntegerField(_("next escalation step"), default=0)
    triggered_at = models.DateTimeField(_("triggered (device clock)"), null=True, blank=True)
    created_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # The association's handling (the console): who took charge, and how it ended.
    taken_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+", verbose_name=_("taken in charge by"))
    taken_at = models.DateTimeField(_("taken in charge"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices, blank=True)
    outcome_note = models.TextField(_("closing note"), blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        indexes = [models.Index(fields=["state", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["person"], condition=JOINABLE & ~Q(kind="test"),
                                    name="one_joinable_alert_per_person"),
            models.UniqueConstraint(fields=["person"], condition=JOINABLE & Q(kind="test"),
                                    name="one_joinable_test_per_person"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_joinable(self) -> bool:
        """JOINABLE, on this row."""
        return self.is_active and not self.duress and not self.superseded

    @property
    def device_state(self) -> str:
        """The state shown to the device: an alert cancelled under duress looks cancelled."""
        if self.duress:
            return self.State.CANCELLED
        return self.state


RANK = {"prevention": 1, "emergency": 2, "alarm": 3}


def stronger(kind: str, than: str) -> bool:
    """prevention < emergency < alarm; a test is never stronger nor weaker than a real alert."""
    return kind in RANK and than in RANK and RANK[kind] > RANK[than]


class JoinedPress(models.Model):
    """A press that joined an alert of the same person already open instead of raising
    its own (see balise.alerts.actions.accept_press). Its client id is the device's
    name for that alert from then on, and stays idempotent."""

    client_id = models.UUIDField(_("press id given by the device"), unique=True)
    alert = models.ForeignKey(Alert, verbose_name=_("alert"), on_delete=models.CASCADE, related_name="joined_presses")
    device = models.ForeignKey("devices.Device", verbose_name=_("device"), on_delete=models.PROTECT,
                               related_name="joined_presses")
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    gesture = models.CharField(_("gesture"), max_length=10, blank=True)
    triggered_at = models.DateTimeField(_("triggered (device clock)"), null=True, blank=True)
    escalated = models.BooleanField(_("escalated the alert"), default=False)
    created_at = models.DateTimeField(_("received"), auto_now_add=True)

    class Meta:
        verbose_name = _("joined press")
        verbose_name_plural = _("joined presses")

    def __str__(self) -> str:
        return _("%(kind)s press joined to %(alert)s") % {"kind": self.get_kind_display(), "alert": self.alert}


class AlertBudget(models.Model):
    """One token bucket (a device's, an association's): see balise.alerts.budget."""

    key = models.CharField(_("budget of"), max_length=40, unique=True)
    tokens = models.FloatField(_("alerts left in the budget"))
    # Unix time of the last refill, in seconds: the refill is computed in SQL, the same
    # on SQLite and PostgreSQL.
    refilled_at = models.FloatField(_("last refill (Unix time)"))
    # Set when an alert first found the bucket empty; cleared once it is full again:
    # the association is told once per episode.
    over_since = models.FloatField(_("over the budget since (Unix time)"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert budget")
        verbose_name_plural = _("alert budgets")

    def __str__(self) -> str:
        return self.key


class LocationFix(models.Model):
    alert = models.ForeignKey(Alert, verbose_name=_("alert"), on_delete=models.CASCADE, related_name="fixes")
    client_id = models.UUIDField(_("position id given by the device"), null=True, blank=True)
    lat = models.FloatField(_("latitude"))
    lon = models.FloatField(_("longitude"))
    accuracy_m = models.FloatField(_("accuracy (m)"), null=True, blank=True)
    recorded_at = models.DateTimeField(_("located (device clock)"))
    source = models.CharField(_("source of the position"), max_length=12, default="unknown")
    received_at = models.DateTimeField(_("time received"), auto_now_add=True)

    class Meta:
        verbose_name = _("location fix")
        verbose_name_plural = _("location fixes")
        ordering = ["recorded_at", "id"]
        constraints = [models.UniqueConstraint(fields=["alert", "client_id"], name="one_fix_per_client_id")]

    def __str__(self) -> str:
        return _("position of %(time)s") % {"time": moment(self.recorded_at)}


class Acknowledgement(models.Model):
    class Channel(models.TextChoices):
        PAGE = "page", _("live page")
        SMS = "sms", _("SMS reply")
        VOICE = "voice", _("keypad during a call")
        STAFF = "staff", _("staff")

    class Answer(models.TextChoices):
        ON_MY_WAY = "on_my_way", _("on my way")
        CALLED_POLICE = "called_police", _("called the police")
        CANNOT_HELP = "cannot_help", _("cannot help")
        ACKNOWLEDGED = "acknowledged", _("acknowledged")

    alert = models.ForeignKey(Alert, verbose_name=_("alert"), on_delete=models.CASCADE, related_name="acknowledgements")
    contact = models.ForeignKey("people.Contact", verbose_name=_("trusted contact"), on_delete=models.SET_NULL,
                                null=True, blank=True)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("staff member"), on_delete=models.SET_NULL,
                              null=True, blank=True)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    answer = models.CharField(_("answer"), max_length=16, choices=Answer.choices, default=Answer.ACKNOWLEDGED)
    at = models.DateTimeField(_("time of the answer"), auto_now_add=True)

    class Meta:
        verbose_name = _("acknowledgement")
        verbose_name_plural = _("acknowledgements")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return _("%(answer)s (%(channel)s, %(time)s)") % {
            "answer": self.get_answer_display(), "channel": self.get_channel_display(), "time": moment(self.at)}


class AlertEvent(models.Model):
    """The append-only timeline of an alert."""

    alert = models.ForeignKey(Alert, verbose_name=_("alert"), on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(_("date and time"), auto_now_add=True, db_index=True)
    kind = models.CharField(_("event"), max_length=40)
    data = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("timeline event")
        verbose_name_plural = _("timeline events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        """The event as the timeline says it (balise.console.timeline)."""
        from balise.console.timeline import describe_events

        return _("%(time)s: %(event)s") % {"time": moment(self.at),
                                            "event": describe_events(self.alert, [self])[0].text}

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("alert events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("alert events are append-only")

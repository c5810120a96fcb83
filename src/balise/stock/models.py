from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from balise.labels import moment


class State(models.TextChoices):
    RECEIVED = "received", _("received in stock")
    IN_STOCK = "in_stock", _("in stock")
    ASSIGNED = "assigned", _("handed over")
    RETURNED = "returned", _("returned")
    WIPED = "wiped", _("wiped, ready again")
    LOST = "lost", _("lost")
    BROKEN = "broken", _("broken")


class StockItem(models.Model):
    """A button or a station an association holds (for itself or for a programme that
    funded it). Its device row (balise.devices) is created with it, in stock, so that
    handing it to a person goes through the person's file and pairing like any device."""

    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.PROTECT, related_name="stock")
    programme = models.ForeignKey("programmes.Programme", on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="stock", verbose_name=_("programme"))
    device = models.OneToOneField("devices.Device", verbose_name=_("device"), on_delete=models.PROTECT,
                                  related_name="stock_item")
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.RECEIVED)
    state_since = models.DateTimeField(_("since"))
    received_at = models.DateTimeField(_("received in stock"))

    class Meta:
        verbose_name = _("stock item")
        verbose_name_plural = _("stock")
        indexes = [models.Index(fields=["association", "state"])]

    def __str__(self) -> str:
        return self.device.hardware_id


class Movement(models.Model):
    """One change of state of a stock item: who, when, from what to what (append-only).
    `person` is the holder when the item was assigned or returned; it is cleared when her
    file is anonymised (balise.closure), the movement itself stays for the report."""

    item = models.ForeignKey(StockItem, verbose_name=_("stock item"), on_delete=models.CASCADE,
                             related_name="movements")
    association = models.ForeignKey("associations.Association", verbose_name=_("association"),
                                    on_delete=models.CASCADE, related_name="+")
    from_state = models.CharField(_("from"), max_length=10, choices=State.choices, blank=True)
    to_state = models.CharField(_("to"), max_length=10, choices=State.choices)
    at = models.DateTimeField(_("at"), db_index=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                           related_name="+", verbose_name=_("by"))
    person = models.ForeignKey("people.Person", verbose_name=_("person protected"), on_delete=models.SET_NULL,
                               null=True, blank=True, related_name="+")
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("stock movement")
        verbose_name_plural = _("stock movements")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["association", "to_state", "at"])]

    def __str__(self) -> str:
        return _("%(item)s: %(from)s → %(to)s, %(time)s") % {
            "item": self.item, "from": self.get_from_state_display() or "—", "to": self.get_to_state_display(),
            "time": moment(self.at)}

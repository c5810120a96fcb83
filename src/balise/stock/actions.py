"""Stock operations: receiving a batch by serial numbers, moving an item from state to
state, handing it to a person (through the person's device and pairing path), taking
it back. Each is one transaction and writes one movement per item (who, when)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from balise.devices.actions import reassign, revoke_tokens
from balise.devices.models import Device
from balise.stock.models import Movement, State, StockItem

MAX_IMPORT = 5000
SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")
# Kinds of hardware an association keeps in stock (phones and virtual buttons are not stock).
STOCK_KINDS = (Device.Kind.BUTTON, Device.Kind.STATION, Device.Kind.TAG, Device.Kind.FLIC)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    State.RECEIVED: (State.IN_STOCK, State.LOST, State.BROKEN),
    State.IN_STOCK: (State.ASSIGNED, State.LOST, State.BROKEN),
    State.ASSIGNED: (State.RETURNED, State.LOST, State.BROKEN),
    State.RETURNED: (State.WIPED, State.LOST, State.BROKEN),
    State.WIPED: (State.ASSIGNED, State.IN_STOCK, State.LOST, State.BROKEN),
    State.LOST: (State.RETURNED,),
    State.BROKEN: (),
}
# Moves a staff member makes from the stock page (assigning goes through a person).
MANUAL = (State.IN_STOCK, State.RETURNED, State.WIPED, State.LOST, State.BROKEN)
DEVICE_STATUS = {
    State.RECEIVED: Device.Status.STOCK, State.IN_STOCK: Device.Status.STOCK, State.WIPED: Device.Status.STOCK,
    State.ASSIGNED: Device.Status.ASSIGNED, State.RETURNED: Device.Status.RETURNED, State.LOST: Device.Status.LOST,
    State.BROKEN: Device.Status.RETIRED,
}
ASSIGNABLE = (State.IN_STOCK, State.WIPED, State.RECEIVED)


class StockError(Exception):
    """A move that is not allowed now; the message is for staff."""


@dataclass(frozen=True)
class Line:
    number: int
    serial: str
    kind: str


def parse(text: str, default_kind: str) -> tuple[list[Line], list[str]]:
    """Serial numbers from a pasted list or a CSV file: one per line, optionally
    followed by a kind (`serial,kind` or `serial;kind`); a header line `serial` is
    skipped. Returns the lines and the errors (one sentence per bad line)."""
    lines: list[Line] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    kinds = {k.value: k.value for k in STOCK_KINDS} | {str(k.label).lower(): k.value for k in STOCK_KINDS}
    for number, row in enumerate(text.splitlines(), start=1):
        cells = [c.strip().strip('"').strip() for c in re.split(r"[,;\t]", row)]
        if not any(cells):
            continue
        serial = cells[0]
        if number == 1 and serial.lower() in ("serial", "numéro de série", "numero de serie", "serial number"):
            continue
        kind = (cells[1] if len(cells) > 1 and cells[1] else default_kind).lower()
        if not SERIAL.match(serial):
            errors.append(_("Line %(n)d: “%(s)s” is not a serial number (3 to 64 letters, digits, . _ : -).")
                          % {"n": number, "s": serial[:40]})
        elif kind not in kinds:
            errors.append(_("Line %(n)d: unknown kind “%(k)s”.") % {"n": number, "k": kind[:20]})
        elif serial in seen:
            errors.append(_("Line %(n)d: %(s)s is already on line %(m)d.") % {"n": number, "s": serial, "m": seen[serial]})
        else:
            seen[serial] = number
            lines.append(Line(number, serial, kinds[kind]))
        if len(lines) > MAX_IMPORT:
            return [], [_("At most %(max)d devices per import.") % {"max": MAX_IMPORT}]
    known = set(Device.objects.filter(hardware_id__in=list(seen)).values_list("hardware_id", flat=True))
    errors += [_("Line %(n)d: %(s)s is already registered.") % {"n": line.number, "s": line.serial}
               for line in lines if line.serial in known]
    if not lines and not errors:
        errors.append(_("No serial number in the list."))
    return lines, errors


def receive(association_id: int, lines: list[Line], user, *, programme_id: int | None = None,
            now: datetime | None = None) -> list[StockItem]:
    """Receive a batch: all of it or nothing (a serial registered meanwhile fails the
    whole batch; nothing is half-imported)."""
    now = now or timezone.now()
    with transaction.atomic():
        devices = Device.objects.bulk_create([
            Device(association_id=association_id, kind=line.kind, hardware_id=line.serial, status=Device.Status.STOCK)
            for line in lines])
        if any(d.pk is None for d in devices):  # (backends that do not return ids)
            by_serial = dict(Device.objects.filter(hardware_id__in=[d.hardware_id for d in devices])
                             .values_list("hardware_id", "pk"))
            for d in devices:
                d.pk = by_serial[d.hardware_id]
        items = StockItem.objects.bulk_create([
            StockItem(association_id=association_id, programme_id=programme_id, device=d, state=State.RECEIVED,
                      state_since=now, received_at=now) for d in devices])
        if any(i.pk is None for i in items):
            ids = dict(StockItem.objects.filter(device__in=devices).values_list("device_id", "pk"))
            for i in items:
                i.pk = ids[i.device_id]
        Movement.objects.bulk_create([
            Movement(item_id=i.pk, association_id=association_id, to_state=State.RECEIVED, at=now, by=user)
            for i in items])
        return items


def _move(item: StockItem, to: str, user, *, person=None, note: str = "", now: datetime | None = None) -> StockItem:
    now = now or timezone.now()
    locked = StockItem.objects.select_for_update(no_key=True).select_related("device").get(pk=item.pk)
    if to not in TRANSITIONS[locked.state]:
        raise StockError(_("A device %(state)s cannot become %(to)s.") % {
            "state": State(locked.state).label, "to": State(to).label})
    Movement.objects.create(item=locked, association_id=locked.association_id, from_state=locked.state, to_state=to,
                            at=now, by=user, person=person, note=note[:200])
    locked.state, locked.state_since = to, now
    locked.save(update_fields=["state", "state_since"])
    device = locked.device
    device.status = DEVICE_STATUS[to]
    device.save(update_fields=["status"])
    return locked


def move(item: StockItem, to: str, user, note: str = "", now: datetime | None = None) -> StockItem:
    """A staff member's move from the stock page (not assigning: see `assign`)."""
    if to not in MANUAL:
        raise StockError(_("Hand a device to a person from her file."))
    with transaction.atomic():
        holder = item.device.holder
        if to in (State.RETURNED, State.WIPED, State.BROKEN, State.IN_STOCK):
            # Back in the association's hands: her tokens stop working.
            reassign(item.device, None)
            revoke_tokens(item.device)
        if to == State.WIPED:
            from balise.evidence.models import DeviceKey

            DeviceKey.objects.filter(device=item.device, revoked_at__isnull=True).update(revoked_at=now or timezone.now())
        return _move(item, to, user, person=holder, note=note, now=now)


def assign(item: StockItem, person, user, now: datetime | None = None) -> StockItem:
    """Hand a stock item to PERSON: the device becomes hers (its earlier tokens revoked)
    and is paired from her file like any device."""
    if person.association_id != item.association_id:
        raise StockError(_("This person is followed by another association than the device."))
    with transaction.atomic():
        if item.state not in ASSIGNABLE:
            raise StockError(_("Only a device in stock can be handed over."))
        if item.state == State.RECEIVED:
            item = _move(item, State.IN_STOCK, user, now=now)
        reassign(item.device, person)
        return _move(item, State.ASSIGNED, user, person=person, now=now)


def take_back(device: Device, user, note: str = "", now: datetime | None = None) -> None:
    """Her device comes back (her file is closed): back to stock as returned, tokens
    revoked. A device that was never in the stock is marked returned all the same."""
    with transaction.atomic():
        item = StockItem.objects.filter(device=device).first()
        holder = device.holder
        reassign(device, None)
        revoke_tokens(device)
        if item is not None and State.RETURNED in TRANSITIONS[item.state]:
            _move(item, State.RETURNED, user, person=holder, note=note, now=now)
        elif device.status == Device.Status.ASSIGNED:
            Device.objects.filter(pk=device.pk).update(status=Device.Status.RETURNED)


def counts(association_ids, programme_id: int | None = None) -> dict[str, int]:
    """{state: number of items} over ASSOCIATION_IDS (and PROGRAMME when given)."""
    rows = StockItem.objects.filter(association_id__in=list(association_ids))
    if programme_id is not None:
        rows = rows.filter(programme_id=programme_id)
    found = dict(rows.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    return {state: found.get(state, 0) for state in State.values}

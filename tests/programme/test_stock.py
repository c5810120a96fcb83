"""The stock: a batch received by serial numbers (all or nothing, every bad line named),
moves recorded with who and when, counts per state, and a stock item handed to a
person through her device and pairing path."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from balise.devices.models import Device
from balise.stock import actions
from balise.stock.models import Movement, State, StockItem
from tests.personas import staff_client

pytestmark = pytest.mark.django_db


def _import(client, world, **data):
    return client.post(reverse("stock:import"), {"association": world.association.pk, "kind": "button", **data})


def test_a_pasted_list_is_received_with_one_movement_each(world):
    staff = staff_client(world.staff)
    response = _import(staff, world, serials="serial\nBTN-0001\nBTN-0002, station\n\nBTN-0003;tag\n")
    assert response.status_code == 302
    items = {i.device.hardware_id: i for i in StockItem.objects.select_related("device")}
    assert set(items) == {"BTN-0001", "BTN-0002", "BTN-0003"}
    assert items["BTN-0002"].device.kind == Device.Kind.STATION
    assert all(i.state == State.RECEIVED and i.device.status == Device.Status.STOCK and i.device.holder is None
               for i in items.values())
    moves = Movement.objects.filter(to_state=State.RECEIVED)
    assert moves.count() == 3 and {m.by for m in moves} == {world.staff}
    page = staff.get(reverse("stock:stock")).content.decode()
    assert "BTN-0001" in page
    assert actions.counts([world.association.pk])[State.RECEIVED] == 3


def test_bad_lines_are_form_errors_and_nothing_is_half_imported(world):
    staff = staff_client(world.staff)
    csv = "BTN-1\nok-serial-1\n??\nok-serial-1\nok-serial-2,toaster\nstation-lyon\n".encode()
    response = _import(staff, world, file=SimpleUploadedFile("batch.csv", csv, content_type="text/csv"))
    assert response.status_code == 400
    page = response.content.decode()
    # "BTN-1" is fine; line 3 is no serial, line 4 repeats line 2, line 5 has an unknown kind,
    # line 6 is the world's station, already registered.
    for fragment in ("Ligne 3", "Ligne 4", "Ligne 5", "Ligne 6"):
        assert fragment in page, fragment
    assert not StockItem.objects.exists() and not Device.objects.filter(hardware_id="BTN-1").exists()


def test_an_empty_list_is_a_form_error(world):
    response = _import(staff_client(world.staff), world, serials="  \n")
    assert response.status_code == 400 and not StockItem.objects.exists()


def test_moves_follow_the_allowed_transitions_and_record_who(world):
    [item] = actions.receive(world.association.pk, actions.parse("BTN-9", "button")[0], world.staff)
    staff = staff_client(world.staff)
    url = reverse("stock:move", args=[item.pk])
    assert staff.post(url, {"to_state": "wiped"}).status_code == 400  # received → wiped: no
    assert staff.post(url, {"to_state": "in_stock"}).status_code == 302
    assert staff.post(url, {"to_state": "broken", "note": "dropped"}).status_code == 302
    item.refresh_from_db()
    assert item.state == State.BROKEN and item.device.status == Device.Status.RETIRED
    assert list(item.movements.order_by("at", "id").values_list("from_state", "to_state")) == [
        ("", "received"), ("received", "in_stock"), ("in_stock", "broken")]
    assert staff.post(url, {"to_state": "in_stock"}).status_code == 400  # broken is final


def test_handing_a_stock_item_to_her_pairs_it_from_her_file(world):
    [item] = actions.receive(world.association.pk, actions.parse("BTN-77", "button")[0], world.staff)
    staff = staff_client(world.staff)
    response = staff.post(reverse("stock:assign", args=[item.pk]), {"person": world.person.pk})
    assert response.status_code == 200 and "pairing-code" in response.content.decode()
    item.refresh_from_db()
    assert item.state == State.ASSIGNED
    assert item.device.holder == world.person and item.device.status == Device.Status.ASSIGNED
    assert item.device.pairing_codes.count() == 1
    move = item.movements.get(to_state=State.ASSIGNED)
    assert move.person == world.person and move.by == world.staff
    # Returned: her tokens stop working and the device is nobody's.
    assert staff.post(reverse("stock:move", args=[item.pk]), {"to_state": "returned"}).status_code == 302
    item.refresh_from_db()
    assert item.device.holder is None and item.state == State.RETURNED


def test_another_association_sees_and_moves_nothing(world, other_world):
    [item] = actions.receive(world.association.pk, actions.parse("BTN-5", "button")[0], world.staff)
    stranger = staff_client(other_world.staff)
    assert "BTN-5" not in stranger.get(reverse("stock:stock")).content.decode()
    assert stranger.get(reverse("stock:item", args=[item.pk])).status_code == 404
    assert stranger.post(reverse("stock:move", args=[item.pk]), {"to_state": "lost"}).status_code == 404
    assert stranger.post(reverse("stock:assign", args=[item.pk]), {"person": other_world.person.pk}).status_code == 404
    # A person of another association cannot be picked either.
    staff = staff_client(world.staff)
    assert staff.post(reverse("stock:assign", args=[item.pk]), {"person": other_world.person.pk}).status_code == 400
    # Nor can a batch be received for another association.
    assert _import(stranger, world, serials="X-123").status_code == 400

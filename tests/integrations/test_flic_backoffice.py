"""Back-office: Flic buttons registered by serial number, one (handed to a person) or a
pasted export of Flic's device manager by the hundred; the metadata to paste into Flic."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from balise.associations.models import Membership
from balise.devices.models import Device
from balise.integrations.flic.actions import parse_serials
from balise.integrations.flic.models import FlicButton
from tests.integrations.flic import claims, es256, post, register
from tests.personas import staff_client

pytestmark = pytest.mark.django_db
REGISTER = "admin:flic_flicbutton_register"


def export(n: int) -> str:
    """What a device manager export looks like: a CSV with a header, serial and uuid."""
    lines = ["Name,Serial Number,UUID,Battery"]
    lines += [f"Button {i},BD{i % 100:02d}-C{i:05d},{i:032x},high" for i in range(n)]
    return "\n".join(lines)


def test_serials_are_found_in_lists_and_exports():
    assert parse_serials("bc44-b06243\n  BC44-B06244 \nnothing here\nBC44-B06243") == [
        ("BC44-B06243", None), ("BC44-B06244", None)]
    assert parse_serials(export(2))[1] == ("BD01-C00001", f"{1:032x}")
    as_json = json.dumps([{"serialNumber": "AA11-B22222", "uuid": "ab" * 16}])
    assert parse_serials(as_json) == [("AA11-B22222", "ab" * 16)]


def test_one_button_handed_to_a_person_works_at_once(client, world):
    staff = staff_client(world.staff)
    response = staff.post(reverse(REGISTER), {"association": world.association.pk, "serials": "bc44-b06243",
                                              "holder": world.person.pk})
    assert response.status_code == 302
    device = Device.objects.get(hardware_id="BC44-B06243")
    assert (device.kind, device.holder, device.status, device.association) == (
        "flic", world.person, "assigned", world.association)
    # The association's settings come from the defaults until it has its own: Flic's key.
    from tests.integrations.flic import PUBLIC_PEM
    from balise.integrations.flic.models import FlicSettings
    FlicSettings.objects.create(association=world.association, public_key=PUBLIC_PEM)
    assert post(client, es256(claims("click", button_uuid="f" * 32))).status_code == 200  # found by serial


def test_hundreds_of_buttons_from_a_pasted_export(world):
    register(world, serial="BD00-C00000", button_uuid=None)  # one already known
    staff = staff_client(world.staff)
    response = staff.post(reverse(REGISTER), {"association": world.association.pk, "serials": export(600)},
                          follow=True)
    assert response.status_code == 200
    assert FlicButton.objects.count() == 600
    assert Device.objects.filter(kind="flic", status="stock", holder=None).count() == 599
    assert FlicButton.objects.get(device__hardware_id="BD42-C00042").uuid == f"{42:032x}"
    html = response.content.decode()
    assert "599" in html and "BD00-C00000" in html  # registered, and the one left as it was


def test_a_person_gets_one_button_only_and_bad_pastes_are_form_errors(world):
    staff = staff_client(world.staff)
    for data in ({"serials": export(3), "holder": world.person.pk}, {"serials": "no serial here"}):
        response = staff.post(reverse(REGISTER), {"association": world.association.pk, **data})
        assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert not FlicButton.objects.exists()


def test_another_association_and_read_only_members_cannot_register(world, other_world):
    staff = staff_client(world.staff)
    response = staff.post(reverse(REGISTER), {"association": other_world.association.pk, "serials": "AA11-B22222"})
    assert response.status_code == 200 and not Device.objects.filter(hardware_id="AA11-B22222").exists()
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.VIEWER)
    response = staff_client(world.staff).post(reverse(REGISTER), {"association": world.association.pk,
                                                                  "serials": "AA11-B22222"})
    assert response.status_code == 302 and not Device.objects.filter(hardware_id="AA11-B22222").exists()


def test_the_register_page_shows_the_metadata_to_paste(world, settings):
    settings.SITE_URL = "https://balise.example.org"
    html = staff_client(world.staff).get(reverse(REGISTER)).content.decode()
    raw = re.search(r'<pre id="flic-metadata">(.*?)</pre>', html, re.S).group(1).replace("&quot;", '"')
    assert json.loads(raw) == {
        "__fcb_icon": "https://balise.example.org/static/flic/icon.png",
        "__fcb_webhook": "https://balise.example.org/integrations/flic/",
        "__fcb_webview": "https://balise.example.org/integrations/flic/page/",
        "__fcb_action": "CLOUD_LOCATION",
        "__fcb_name": "Mon espace",
    }


def test_the_list_shows_battery_and_last_press_of_her_association_only(client, world, other_world):
    register(world)
    post(client, es256(claims("click", battery="low")))
    register(other_world, serial="ZZ99-Z99999", button_uuid=None)
    html = staff_client(world.staff).get(reverse("admin:flic_flicbutton_changelist")).content.decode()
    assert "BC44-B06243" in html and "ZZ99-Z99999" not in html
    assert "faible" in html


def test_the_icon_is_served(client):
    response = client.get("/static/flic/icon.png")
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_administrators_change_the_flic_settings_which_show_the_metadata(world, other_world):
    from balise.integrations.flic.models import FlicSettings

    mine = FlicSettings.objects.create(association=world.association)
    theirs = FlicSettings.objects.create(association=other_world.association)
    staff = staff_client(world.staff)  # a referent
    change = reverse("admin:flic_flicsettings_change", args=[mine.pk])
    html = staff.get(change).content.decode()
    assert "__fcb_webhook" in html and 'name="algorithm"' not in html  # read only for her
    assert staff.post(change, {"algorithm": "HS256"}).status_code == 403
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.ADMIN)
    staff = staff_client(world.staff)
    assert 'name="algorithm"' in staff.get(change).content.decode()
    assert staff.get(reverse("admin:flic_flicsettings_change", args=[theirs.pk])).status_code == 302

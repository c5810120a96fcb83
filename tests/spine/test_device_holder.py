"""A device's token follows its holder: handed to someone else, the device is paired
again and never sees the previous holder's alerts. Cancel PINs cannot be guessed: after a
few wrong ones on an alert, every attempt is refused alike, the association sees the
burst, and the duress PIN still escalates without looking any different from the cancel
PIN."""

from __future__ import annotations

import pytest
from django.db import connection  # noqa: F401  (named by a skip condition)
from django.urls import reverse

from balise.alerts.actions import resolve_alert
from balise.alerts.models import Alert
from balise.devices.actions import issue_token, reassign
from balise.devices.models import Device
from balise.dispatch.messages import render
from balise.dispatch.models import Delivery
from balise.people.models import Person
from tests.personas import CANCEL_PIN, DURESS_PIN, staff_client
from tests.spine.test_device_api import alert_body, fix, post

pytestmark = pytest.mark.django_db


def new_person(world, name="Dominique") -> Person:
    person = Person(association=world.association, display_name=name, language="fr")
    person.set_pins("9999", "8888")
    person.save()
    return person


def cancel(client, world, body, pin):
    return post(client, world, f"/alerts/{body['client_id']}/cancel", {"pin": pin})


# --- tokens follow the holder -------------------------------------------------------------


def test_reassigning_a_device_revokes_its_token(client, world):
    body = alert_body()
    assert post(client, world, "/alerts", body).status_code == 201
    assert reassign(world.device, new_person(world)) == 1
    assert client.get(f"/api/v1/alerts/{body['client_id']}", **world.auth).status_code == 401
    assert post(client, world, "/heartbeat", {}).status_code == 401
    assert post(client, world, "/alerts", alert_body()).status_code == 401
    # giving it to the same person again changes nothing
    world.token = issue_token(world.device)
    assert reassign(world.device, world.device.holder) == 0
    assert post(client, world, "/heartbeat", {}).status_code == 200


def test_a_device_of_one_association_never_carries_a_person_of_another(world, other_world):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        reassign(world.device, other_world.person)
    world.device.refresh_from_db()
    assert world.device.holder == world.person
    assert world.device.credentials.filter(revoked_at__isnull=True).count() == 1


def test_a_re_paired_device_never_sees_the_previous_holders_alerts(client, world):
    old = alert_body()
    post(client, world, "/alerts", old)
    reassign(world.device, new_person(world))
    world.token = issue_token(world.device)  # paired again for her
    for r in (client.get(f"/api/v1/alerts/{old['client_id']}", **world.auth),
              post(client, world, f"/alerts/{old['client_id']}/fixes", {"fixes": [fix()]}),
              cancel(client, world, old, CANCEL_PIN)):
        assert r.status_code == 404, r.content
    beat = post(client, world, "/heartbeat", {})
    assert beat.status_code == 200 and beat.json()["open_alerts"] == []
    assert Alert.objects.get(client_id=old["client_id"]).state == "open"
    # her own alerts work as usual
    mine = alert_body()
    assert post(client, world, "/alerts", mine).status_code == 201
    assert [a["client_id"] for a in post(client, world, "/heartbeat", {}).json()["open_alerts"]] == [mine["client_id"]]


def test_changing_the_holder_in_the_back_office_revokes_the_token(client, world):
    other = new_person(world)
    staff = staff_client(world.staff)
    device = world.device
    form = {"association": world.association.pk, "holder": other.pk, "kind": device.kind,
            "hardware_id": device.hardware_id, "status": device.status}
    r = staff.post(reverse("admin:devices_device_change", args=[device.pk]), form)
    assert r.status_code == 302, r.content
    device.refresh_from_db()
    assert device.holder == other
    assert post(client, world, "/heartbeat", {}).status_code == 401
    # an edit that keeps the holder keeps the pairing
    world.token = issue_token(device)
    r = staff.post(reverse("admin:devices_device_change", args=[device.pk]), {**form, "status": Device.Status.LOST})
    assert r.status_code == 302
    Device.objects.filter(pk=device.pk).update(status=Device.Status.ASSIGNED)
    assert post(client, world, "/heartbeat", {}).status_code == 200


# --- cancel PINs are limited per alert ------------------------------------------------------


def test_after_the_limit_even_the_right_pin_is_refused_like_a_wrong_one(client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 3
    body = alert_body()
    post(client, world, "/alerts", body)
    wrong = [cancel(client, world, body, pin) for pin in ("0000", "1111", "2222")]
    assert {r.status_code for r in wrong} == {403}
    alert = Alert.objects.get(client_id=body["client_id"])
    assert list(alert.events.filter(kind="cancel_pin_locked").values_list("data", flat=True)) == [{"wrong_pins": 3}]
    right = cancel(client, world, body, CANCEL_PIN)
    assert (right.status_code, right.content) == (wrong[0].status_code, wrong[0].content)
    alert.refresh_from_db()
    assert alert.state == "open" and not alert.duress
    assert alert.events.filter(kind="cancel_refused").count() == 4
    assert alert.events.filter(kind="cancel_pin_locked").count() == 1
    # another alert has its own count (the first one closed, or the press would join it)
    resolve_alert(alert)
    fresh = alert_body()
    post(client, world, "/alerts", fresh)
    assert cancel(client, world, fresh, CANCEL_PIN).status_code == 200


def test_below_the_limit_the_right_pin_still_cancels(client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 3
    body = alert_body()
    post(client, world, "/alerts", body)
    for pin in ("0000", "1111"):
        assert cancel(client, world, body, pin).status_code == 403
    assert cancel(client, world, body, CANCEL_PIN).status_code == 200
    alert = Alert.objects.get(client_id=body["client_id"])
    assert alert.state == "cancelled"
    assert not alert.events.filter(kind="cancel_pin_locked").exists()


def test_the_duress_pin_is_never_wrong_and_after_the_limit_answers_like_the_cancel_pin(client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 2
    # Duress PINs do not count as wrong ones: many of them never lock the alert.
    first = alert_body()
    post(client, world, "/alerts", first)
    for _ in range(3):
        assert cancel(client, world, first, DURESS_PIN).status_code == 200
    assert not Alert.objects.get(client_id=first["client_id"]).events.filter(kind="cancel_refused").exists()
    resolve_alert(Alert.objects.get(client_id=first["client_id"]))  # or the next presses would join it
    # After the limit: the cancel PIN and the duress PIN get the very same refusal…
    locked_cancel, locked_duress = alert_body(), alert_body()
    answers = {}
    for body, pin in ((locked_cancel, CANCEL_PIN), (locked_duress, DURESS_PIN)):
        post(client, world, "/alerts", body)
        for wrong in ("0000", "1111"):
            cancel(client, world, body, wrong)
        r = cancel(client, world, body, pin)
        answers[pin] = (r.status_code, r.content, sorted(r.headers.items()))
        if pin == CANCEL_PIN:
            resolve_alert(Alert.objects.get(client_id=body["client_id"]))
    assert answers[CANCEL_PIN] == answers[DURESS_PIN]
    assert answers[CANCEL_PIN][0] == 403
    # …but the duress PIN still flags the alert and escalates it to everyone at once.
    duress = Alert.objects.get(client_id=locked_duress["client_id"])
    assert duress.duress and duress.state == "open" and duress.events.filter(kind="duress").exists()
    assert Delivery.objects.filter(alert=duress, purpose="escalation", template="duress", channel="voice").count() == 6
    kept = Alert.objects.get(client_id=locked_cancel["client_id"])
    assert not kept.duress and kept.state == "resolved", "only staff closed it"
    assert not Delivery.objects.filter(alert=kept, template="duress").exists()


def test_the_association_sees_the_burst_in_the_alerts_timeline(client, world, settings):
    settings.CANCEL_PIN_MAX_ATTEMPTS = 2
    body = alert_body()
    post(client, world, "/alerts", body)
    for pin in ("0000", "1111"):
        cancel(client, world, body, pin)
    alert = Alert.objects.get(client_id=body["client_id"])
    page = staff_client(world.staff).get(reverse("admin:alerts_alert_change", args=[alert.pk]))
    assert page.status_code == 200
    assert ("2 codes d&#x27;annulation erronés : l&#x27;annulation depuis son appareil est bloquée, "
            "la ligne d&#x27;astreinte est prévenue") in page.content.decode()
    cancel(client, world, body, "2222")  # after the limit: no second notice
    [notice] = Delivery.objects.filter(alert=alert, template="pin_locked")
    assert (notice.purpose, notice.channel, notice.recipient) == ("notice", "sms", world.association.on_call_number)
    text = render(notice.template, channel="sms", language="fr", alert=alert, contact_id=None, fix=None)
    assert "Camille" in text and "code" in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs concurrent writers (row locks)")
def test_concurrent_guesses_lock_the_alert_once(world, settings):
    """Guesses sent all at once (several connections): the limit holds exactly."""
    import threading
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from balise.alerts.actions import AlertError, cancel_alert, create_alert

    settings.CANCEL_PIN_MAX_ATTEMPTS = 3
    alert, _ = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency", gesture="double")
    guesses = [f"{n:04d}" for n in range(8)] + [CANCEL_PIN] * 4
    barrier = threading.Barrier(len(guesses))

    def guess(pin):
        try:
            barrier.wait()
            cancel_alert(Alert.objects.select_related("person").get(pk=alert.pk), pin)
            return "cancelled"
        except AlertError:
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(guesses)) as pool:
        answers = list(pool.map(guess, guesses))
    alert.refresh_from_db()
    events = list(alert.events.values_list("kind", flat=True))
    assert events.count("cancel_pin_locked") == 1
    wrong_before_limit = [e for e in alert.events.filter(kind="cancel_refused") if not e.data.get("after_limit")]
    assert len(wrong_before_limit) == 3
    # the right PIN cancelled only if it came before the limit was reached
    assert (alert.state == "cancelled") is ("cancelled" in answers)
    assert answers.count("cancelled") <= 4 and answers[:8].count("cancelled") == 0

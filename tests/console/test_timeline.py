"""Every kind of alert event the code records reads as a sentence in the timeline, in
French: none falls back to "Technical event" (found by reading the source, so a new kind
without a sentence fails here)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from django.utils import timezone, translation

from balise.alerts.actions import create_alert
from balise.alerts.models import AlertEvent
from balise.console.timeline import describe_events

SRC = Path(__file__).resolve().parents[2] / "src" / "balise"
RECORDED = re.compile(r'record_event\(\s*[\w.]+,\s*"(\w+)"|AlertEvent(?:\.objects\.create)?\([^)]*?kind="(\w+)"')
CONDITIONAL = re.compile(r'kind="(\w+)" if \w+ else "(\w+)"')
# Kinds built from a value: f"delivery_{result}" with result in sent, failed, retry.
BUILT = {"delivery_sent", "delivery_failed", "delivery_retry"}
# Variants of one kind that read differently (by their data).
DATA = {
    "delivery_failed": [{"channel": "sms"}, {"channel": "voice", "fault": True}, {"channel": "sms", "fault": True}],
    "cancel_refused": [{}, {"after_limit": True}],
    "cancel_pin_locked": [{"wrong_pins": 3}],
    "over_budget": [{"budget": "device", "capped": True}, {"budget": "association", "capped": False}],
    "press_joined": [{"kind": "emergency"}],
    "escalated_by_press": [{"from": "prevention", "to": "alarm"}],
    "on_call_notified": [{"reason": "undeliverable"}],
    "carrier_state": [{"channel": "sms", "state": "undelivered"}, {"channel": "voice", "state": "busy"}],
    "escalation_failed": [{"step": 2}],
    "checkin_pin_refused": [{"wrong_pins": 2, "locked": False}, {"wrong_pins": 5, "locked": True}],
}


def recorded_kinds() -> set[str]:
    kinds = set(BUILT)
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        kinds |= {a or b for a, b in RECORDED.findall(text)}
        kinds |= {k for pair in CONDITIONAL.findall(text) for k in pair}
    return kinds


def test_every_recorded_event_kind_has_a_french_sentence(world):
    kinds = recorded_kinds()
    assert {"cancel_pin_locked", "over_budget", "press_joined", "on_call_notified", "carrier_state",
            "escalation_failed", "escalation_fault"} <= kinds, "the source scan finds the kinds"
    alert, _created = create_alert(world.device, client_id=uuid.uuid4(), kind="emergency",
                                   triggered_at=timezone.now())
    events = [AlertEvent(alert=alert, kind=kind, at=timezone.now(), data=data)
              for kind in sorted(kinds) for data in DATA.get(kind, [{}])]
    with translation.override("fr"):
        lines = describe_events(alert, events)
    unread = [e.kind for e, line in zip(events, lines) if line.text == "Événement technique"]
    assert not unread
    texts = {(e.kind, str(e.data)): line.text for e, line in zip(events, lines)}
    assert texts[("cancel_pin_locked", "{'wrong_pins': 3}")].startswith("3 codes d'annulation erronés")
    assert len({texts[k] for k in texts if k[0] == "delivery_failed"}) == 3, "a fault reads differently"


def test_carrier_reports_read_as_sentences_and_in_the_contact_table(world):
    from django.urls import reverse

    from balise.dispatch.models import Delivery
    from balise.inbound.actions import call_event, carrier_status
    from tests.contacts.helpers import raise_alert
    from tests.personas import staff_client

    alert = raise_alert(world, "alarm")
    first, second = world.contacts[0], world.contacts[1]
    sms = Delivery.objects.filter(alert=alert, contact=first, channel="sms").first()
    assert sms is not None
    call = Delivery.objects.create(alert=alert, contact=second, channel="voice", recipient=second.phone,
                                   next_attempt_at=timezone.now(), created_at=timezone.now())
    Delivery.objects.filter(pk__in=[sms.pk, call.pk]).update(state="sent", sent_at=timezone.now())
    assert carrier_status(str(sms.pk), status="delivered") == "recorded"
    assert call_event(str(call.pk), status="completed", answered_by="machine_end_beep") == "recorded"
    html = staff_client(world.staff).get(reverse("console:alert", args=[alert.pk])).content.decode()
    assert f"SMS délivré à {first.name}" in html
    assert f"Appel à {second.name} : messagerie vocale" in html
    table = html.split('id="contacts"')[1].split("</table>")[0]
    row = table.split(first.name)[1].split("</tr>")[0]
    assert '<span class="tone-ok">délivré</span>' in row
    row = table.split(second.name)[1].split("</tr>")[0]
    assert '<span class="tone-bad">messagerie vocale</span>' in row
    assert "Rapport de l" not in html and "carrier_state" not in html

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

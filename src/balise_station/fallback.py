"""Offline fallback: the station sends the alert SMS itself through its GSM modem.

Used when the server has not accepted an alert within the configured delay.
One SMS per contact who accepted the role (every contact for an alarm), recorded per
contact so a restart never sends the same contact the same SMS twice. The
alert then carries ``sms_sent_by_device: true`` to the server when every
contact got the SMS, and ``sms_sent_to_contacts`` lists those who did: on a
partial send the server texts the others.

A test alert never reaches the contacts: offline, it goes to the association's
on-call number (``association.on_call_number`` in the copy of ``GET /contacts``). So does
a real alert of a person none of whose contacts has accepted yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from balise_station.modem import GsmModem, ModemError

log = logging.getLogger(__name__)

TEXTS = {
    "fr": {
        "prevention": "Balise: {name} signale un risque. {where} Appelez-la. Si danger: 17 ou 112, SMS 114.",
        "emergency": "ALERTE Balise: {name} en DANGER GRAVE. {where} Appelez le 17 ou le 112 (SMS 114) maintenant.",
        "alarm": "ALARME Balise: {name} en danger, sirene declenchee. {where} Appelez le 17 ou le 112 maintenant.",
        "where": "https://osm.org/?mlat={lat:.5f}&mlon={lon:.5f} +-{acc}m.",
        "nowhere": "Position inconnue.",
        "test": "Balise TEST: {name} essaie son bouton; serveur injoignable, SMS de la station. Exercice, pas d'urgence.",
    },
    "en": {
        "prevention": "Balise: {name} reports a risk. {where} Call her. If in danger call 112.",
        "emergency": "ALERT Balise: {name} in SERIOUS DANGER. {where} Call 112 (France: 17, SMS 114) now.",
        "alarm": "ALARM Balise: {name} in danger, siren sounding. {where} Call 112 (France: 17) now.",
        "where": "https://osm.org/?mlat={lat:.5f}&mlon={lon:.5f} +-{acc}m.",
        "nowhere": "Location unknown.",
        "test": "Balise TEST: {name} is trying her button; server unreachable, SMS from the station. Drill, no emergency.",
    },
}


def sms_text(kind: str, person_name: str, fix: dict[str, Any] | None, language: str = "fr") -> str:
    """The alert SMS for one contact, in their language, at most 160 GSM characters."""
    texts = TEXTS.get(language[:2].lower(), TEXTS["fr"])
    if fix is not None:
        where = texts["where"].format(lat=fix["lat"], lon=fix["lon"], acc=round(float(fix["accuracy_m"])))
    else:
        where = texts["nowhere"]
    name = (person_name or "?").strip()[:16]
    return texts.get(kind, texts["emergency"]).format(name=name, where=where)


def recipients(contacts_payload: dict[str, Any] | None, everyone: bool = False) -> list[dict[str, Any]]:
    """Contacts who accepted the role (or, for an alarm, EVERYONE registered, as the
    server would), in their order."""
    if not contacts_payload:
        return []
    rows = [c for c in contacts_payload.get("contacts", [])
            if (everyone or c.get("consent") == "accepted") and c.get("phone")]
    return sorted(rows, key=lambda c: c.get("position", 0))[:5]


ON_CALL = "on-call"


def on_call(contacts_payload: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The association's on-call line, the only recipient of a test alert."""
    association = (contacts_payload or {}).get("association") or {}
    number = association.get("on_call_number") if isinstance(association, dict) else None
    return [{"id": ON_CALL, "position": 0, "phone": number, "language": "fr"}] if number else []


def _who(recipient: dict[str, Any]) -> str:
    """For the log: never the number."""
    return "the on-call line" if recipient["id"] == ON_CALL else f"contact #{recipient.get('position')}"


@dataclass(frozen=True)
class FallbackResult:
    state: str  # done | partial | failed | skipped
    sent: int
    failed: int
    error: str = ""  # the modem's last error, for the log and status

    @property
    def all_sent(self) -> bool:
        return self.state == "done"


def send_alert_sms(
    modem_factory: Callable[[], GsmModem],
    client_id: str,
    kind: str,
    fix: dict[str, Any] | None,
    contacts_payload: dict[str, Any] | None,
    already: dict[str, str],
    record: Callable[[str, str, str], None],
) -> FallbackResult:
    """Sends the SMS to every contact not yet reached (blocking; run it in a thread)."""
    if kind == "test":
        people = on_call(contacts_payload)
    else:
        # With no contact to text (none has accepted yet), the association's line: an
        # alert the server cannot hear must still reach someone.
        people = recipients(contacts_payload, everyone=kind == "alarm") or on_call(contacts_payload)
    if not people:
        return FallbackResult("skipped", 0, 0)
    person = (contacts_payload or {}).get("person", {}).get("display_name", "")
    todo = [c for c in people if already.get(str(c["id"])) != "sent"]
    sent = len(people) - len(todo)
    failed = 0
    last_error = ""
    try:
        modem = modem_factory()
        modem.open()
    except ModemError as exc:
        log.error("alert %s: modem unavailable (%s)", client_id, exc)
        for c in todo:
            record(str(c["id"]), "failed", str(exc))
        return FallbackResult("failed" if sent == 0 else "partial", sent, len(todo), str(exc))
    try:
        for c in todo:
            text = sms_text(kind, person, fix, c.get("language") or "fr")
            try:
                modem.send_sms(c["phone"], text)
            except ModemError as exc:
                failed += 1
                last_error = str(exc)
                record(str(c["id"]), "failed", exc.code or str(exc))
                log.warning("alert %s: SMS to %s failed (%s)", client_id, _who(c), exc.code)
                if exc.code == "timeout":  # a modem that stopped answering: reopen it for the next one
                    modem.close()
                    try:
                        modem.open()
                    except ModemError:
                        pass
                continue
            sent += 1
            record(str(c["id"]), "sent", "")
            log.info("alert %s: SMS sent by the modem to %s", client_id, _who(c))
    finally:
        modem.close()
    state = "done" if failed == 0 else ("partial" if sent else "failed")
    return FallbackResult(state, sent, failed, last_error)

"""The modem client against the simulated modem on a pseudo-terminal, with modem errors."""

from __future__ import annotations

import pytest

from balise_station.fallback import recipients, send_alert_sms, sms_text
from balise_station.modem import GsmModem, ModemError, gsm_text
from balise_station.sim.modem import SimulatedModem
from station_fakes import FakeDeviceApi

CONTACTS = FakeDeviceApi().contacts  # the server's sample payload
FIX = {"id": "f", "lat": 48.856614, "lon": 2.3522219, "accuracy_m": 12.4,
       "recorded_at": "2026-01-01T00:00:00Z", "source": "gps"}


@pytest.fixture
def sim():
    with SimulatedModem() as m:
        yield m


def test_send_sms_in_text_mode(sim: SimulatedModem) -> None:
    with GsmModem(sim.port, timeout_s=2) as modem:
        ref = modem.send_sms("+33612345678", "Bonjour, ça va ?")
        assert modem.signal_quality() == 18
    assert ref == 1
    assert sim.sent == [("+33612345678", "Bonjour, ca va ?")]
    assert sim.commands[:5] == ["AT", "ATE0", "AT+CMEE=1", "AT+CMGF=1", 'AT+CSCS="GSM"']


def test_network_refusal_is_an_error_with_its_code(sim: SimulatedModem) -> None:
    sim.refuse_numbers["+33600000000"] = 38
    with GsmModem(sim.port, timeout_s=2) as modem:
        with pytest.raises(ModemError) as err:
            modem.send_sms("+33600000000", "x")
        assert err.value.code == "+CMS ERROR: 38"
        assert modem.send_sms("+33612345678", "still works") == 1


def test_no_sim(sim: SimulatedModem) -> None:
    sim.no_sim = True
    with GsmModem(sim.port, timeout_s=2) as modem:
        with pytest.raises(ModemError, match="CME ERROR: 10"):
            modem.send_sms("+33612345678", "x")


def test_silent_modem_times_out(sim: SimulatedModem) -> None:
    sim.silent = True
    with pytest.raises(ModemError, match="did not answer"):
        GsmModem(sim.port, timeout_s=0.5).open()


def test_missing_port() -> None:
    with pytest.raises(ModemError, match="cannot open"):
        GsmModem("/dev/does-not-exist").open()


def test_rejects_something_that_is_not_a_number(sim: SimulatedModem) -> None:
    with GsmModem(sim.port, timeout_s=2) as modem, pytest.raises(ModemError):
        modem.send_sms('+336"; AT+CMGD=1', "x")


def test_sms_texts_fit_one_gsm_message() -> None:
    for kind in ("prevention", "emergency", "alarm"):
        for lang in ("fr", "en"):
            text = sms_text(kind, "Marie-Hélène Dupont-Delacroix", FIX, lang)
            assert len(gsm_text(text)) == len(text) <= 160, text
            assert "48.85661" in text and "2.35222" in text and "+-12m" in text
    assert "17" in sms_text("emergency", "Camille", None, "fr")
    assert "Position inconnue" in sms_text("alarm", "Camille", None, "fr")
    assert "112" in sms_text("emergency", "Camille", FIX, "en")


def test_only_contacts_who_accepted_except_for_an_alarm() -> None:
    assert [c["id"] for c in recipients(CONTACTS)] == [3, 4]
    assert recipients(None) == []
    # an alarm reaches every registered contact, consenting or not, as on the server
    assert [c["id"] for c in recipients(CONTACTS, everyone=True)] == sorted(
        (c["id"] for c in CONTACTS["contacts"] if c.get("phone")), key=lambda i: next(
            c["position"] for c in CONTACTS["contacts"] if c["id"] == i))


def test_fallback_sends_one_sms_per_contact_and_records_them(sim: SimulatedModem) -> None:
    records: dict[str, str] = {}
    result = send_alert_sms(lambda: GsmModem(sim.port, timeout_s=2), "cid", "emergency", FIX, CONTACTS, {},
                            lambda cid, state, detail: records.__setitem__(cid, state))
    assert (result.state, result.sent, result.failed) == ("done", 2, 0)
    assert [n for n, _ in sim.sent] == ["+33612345678", "+447700900123"]
    assert sim.sent[0][1].startswith("ALERTE Balise: Camille en DANGER GRAVE")
    assert sim.sent[1][1].startswith("ALERT Balise: Camille")
    assert records == {"3": "sent", "4": "sent"}


def test_fallback_after_a_restart_skips_who_was_reached(sim: SimulatedModem) -> None:
    sim.fail_next_sends = 1
    records: dict[str, str] = {}
    factory = lambda: GsmModem(sim.port, timeout_s=2)  # noqa: E731
    first = send_alert_sms(factory, "cid", "emergency", FIX, CONTACTS, {},
                           lambda cid, state, detail: records.__setitem__(cid, state))
    assert (first.state, records) == ("partial", {"3": "failed", "4": "sent"})
    second = send_alert_sms(factory, "cid", "emergency", FIX, CONTACTS, dict(records),
                            lambda cid, state, detail: records.__setitem__(cid, state))
    assert (second.state, second.sent) == ("done", 2)
    assert [n for n, _ in sim.sent] == ["+447700900123", "+33612345678"]


def test_fallback_never_texts_contacts_for_a_test_alert(sim: SimulatedModem) -> None:
    no_on_call = {k: v for k, v in CONTACTS.items() if k != "association"}
    result = send_alert_sms(lambda: GsmModem(sim.port), "cid", "test", FIX, no_on_call, {}, lambda *a: None)
    assert result.state == "skipped" and sim.sent == []
    records: dict[str, str] = {}
    result = send_alert_sms(lambda: GsmModem(sim.port), "cid", "test", FIX, CONTACTS, {},
                            lambda who, state, detail: records.__setitem__(who, state))
    assert result.state == "done" and records == {"on-call": "sent"}
    assert [n for n, _ in sim.sent] == ["+33472000000"], "only the association's on-call line"
    assert "TEST" in sim.sent[0][1] and "osm.org" not in sim.sent[0][1]


def test_fallback_with_no_modem_fails_cleanly() -> None:
    records: dict[str, str] = {}
    result = send_alert_sms(lambda: GsmModem("/dev/nonexistent-modem"), "cid", "emergency", FIX, CONTACTS, {},
                            lambda cid, state, detail: records.__setitem__(cid, state))
    assert (result.state, records) == ("failed", {"3": "failed", "4": "failed"})


def test_fallback_texts_the_on_call_line_when_no_contact_accepted(sim: SimulatedModem) -> None:
    nobody = {**CONTACTS, "contacts": [{**c, "consent": "pending"} for c in CONTACTS["contacts"]]}
    records: dict[str, str] = {}
    result = send_alert_sms(lambda: GsmModem(sim.port, timeout_s=2), "cid", "emergency", FIX, nobody, {},
                            lambda who, state, detail: records.__setitem__(who, state))
    assert result.state == "done" and records == {"on-call": "sent"}
    assert [n for n, _ in sim.sent] == ["+33472000000"]
    assert sim.sent[0][1].startswith("ALERTE Balise: Camille") and "osm.org" in sim.sent[0][1]

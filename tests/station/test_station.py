"""The whole station against a device API server on loopback, with its simulated twins."""

from __future__ import annotations

import asyncio
from pathlib import Path


from balise_station.config import load_config
from balise_station.gestures import ButtonMode, Edge, Gesture
from balise_station.modem import GsmModem
from balise_station.siren import PacedSink, Siren
from balise_station.sim.modem import SimulatedModem
from balise_station.station import Station, alert_kind
from station_fakes import FakeDeviceApi, TOKEN, tap, wait_for


def write_config(tmp_path: Path, server_url: str, extra: str = "") -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[server]
url = "{server_url}"
token = "{TOKEN}"
timeout_s = 1

[station]
state_dir = "state"

[alerts]
fallback_delay_s = 0.6
fix_interval_s = 1

[location]
sources = ["fixed", "simulated"]
[location.fixed]
lat = 48.8566
lon = 2.3522
accuracy_m = 40
[location.simulated]
interval_s = 0.05
accuracy_m = 6
{extra}
""")
    return path




def run_station(cfg_path: Path, body, modem: SimulatedModem | None = None, **kw):
    cfg = load_config(cfg_path, env={})

    async def main():
        siren = Siren(PacedSink(), max_duration_s=30)
        factory = (lambda: GsmModem(modem.port, timeout_s=2)) if modem else None
        station = Station(cfg, siren=siren, modem_factory=factory,
                          simulated_buttons={"sim": ButtonMode.EDGES, "tag": ButtonMode.PRESS_ONLY}, **kw)
        await station.start()
        try:
            return await body(station)
        finally:
            await station.close()

    return asyncio.run(main())


def test_alert_kinds() -> None:
    assert [alert_kind(g) for g in Gesture] == ["prevention", "emergency", "alarm", "alarm"]
    assert alert_kind(Gesture.LONG, test_mode=True) == "test"
    assert alert_kind(Gesture.DOUBLE, test_gesture=Gesture.DOUBLE) == "test"


def test_each_gesture_raises_its_alert_and_only_the_long_press_sounds(tmp_path, device_api: FakeDeviceApi) -> None:
    async def body(station: Station):
        await wait_for(lambda: station.hub.sources_seen() == ["simulated"])
        tap(station)
        await wait_for(lambda: len(device_api.alerts) == 1)
        assert not station.siren.playing
        tap(station, presses=2)
        await wait_for(lambda: len(device_api.alerts) == 2)
        assert not station.siren.playing
        station.button_edge("sim", Edge.PRESS)
        await wait_for(lambda: len(device_api.alerts) == 3)
        assert station.siren.playing, "the siren sounds while the button is still held"
        station.button_edge("sim", Edge.RELEASE)
        tap(station, "tag", presses=3)  # a press-only tag: three presses are the alarm
        await wait_for(lambda: len(device_api.alerts) == 4)
        # the tag's burst window must be over before the next press, or it joins the burst
        await wait_for(lambda: station.router.next_deadline() is None)
        tap(station)  # a single press stops the siren, and raises nothing
        await wait_for(lambda: not station.siren.playing)
        assert [g.gesture for g in station.gestures][-1] is Gesture.SINGLE
        assert len(station.outbox.alerts()) == 4

    run_station(write_config(tmp_path, device_api.url), body)
    alerts = sorted(device_api.alerts.values(), key=lambda a: a["id"])
    assert [(a["kind"], a["gesture"]) for a in alerts] == [
        ("prevention", "single"), ("emergency", "double"), ("alarm", "long"), ("alarm", "triple")]
    for a in alerts:
        [fix] = a["fixes"]
        assert fix["source"] == "simulated" and fix["accuracy_m"] == 6.0  # best fix: fresher and sharper
        assert a["sms_sent_by_device"] is False


def test_server_down_modem_sends_then_server_gets_it_once(tmp_path, device_api: FakeDeviceApi) -> None:
    with SimulatedModem() as modem:
        async def body(station: Station):
            await wait_for(lambda: station.outbox.contacts() is not None)
            device_api.stop()
            tap(station, presses=2)
            await wait_for(lambda: len(modem.sent) == 2)
            assert len(device_api.alerts) == 0
            device_api.start()
            await wait_for(lambda: station.outbox.alerts()[0].state == "delivered", timeout=15)
            return station.outbox.alerts()[0]

        row = run_station(write_config(tmp_path, device_api.url), body, modem=modem)
    [alert] = device_api.alerts.values()
    assert alert["kind"] == "emergency" and alert["sms_sent_by_device"] is True
    assert {n for n, _ in modem.sent} == {"+33612345678", "+447700900123"}  # not the contact who did not accept
    assert all("https://osm.org/?mlat=48.8" in text for _, text in modem.sent)
    assert row.state == "delivered" and row.fallback == "done"


def test_slow_server_that_answers_in_time_means_no_sms(tmp_path, device_api: FakeDeviceApi) -> None:
    with SimulatedModem() as modem:
        async def body(station: Station):
            await wait_for(lambda: station.outbox.contacts() is not None)
            device_api.delay_s = 0.3
            station.raise_alert("prevention", "single")
            await wait_for(lambda: len(device_api.alerts) == 1)
            await asyncio.sleep(1.0)

        run_station(write_config(tmp_path, device_api.url), body, modem=modem)
    assert modem.sent == []
    assert list(device_api.alerts.values())[0]["sms_sent_by_device"] is False


def test_partial_modem_failure_lets_the_server_send_the_sms(tmp_path, device_api: FakeDeviceApi) -> None:
    with SimulatedModem(refuse_numbers={"+447700900123": 38}) as modem:
        async def body(station: Station):
            await wait_for(lambda: station.outbox.contacts() is not None)
            device_api.stop()
            cid = station.raise_alert("alarm", "long")
            await wait_for(lambda: station.outbox.alert(cid).fallback == "partial")
            device_api.start()
            await wait_for(lambda: len(device_api.alerts) == 1, timeout=15)

        run_station(write_config(tmp_path, device_api.url), body, modem=modem)
    # an alarm reaches every registered contact, even one who has not answered the invitation
    assert [n for n, _ in modem.sent] == ["+33612345678", "+33698765432"]
    [alert] = device_api.alerts.values()
    assert alert["sms_sent_by_device"] is False
    assert alert["sms_sent_to_contacts"] == [3, 5], "the server texts only the contact the modem missed"


def test_test_mode_reaches_only_the_on_call_line_and_stays_silent(tmp_path, device_api: FakeDeviceApi) -> None:
    with SimulatedModem() as modem:
        async def body(station: Station):
            await wait_for(lambda: station.outbox.contacts() is not None)
            device_api.stop()
            station.button_edge("sim", Edge.PRESS)
            await wait_for(lambda: station.gestures)  # the long press, decided while held
            assert not station.siren.playing
            station.button_edge("sim", Edge.RELEASE)
            await wait_for(lambda: station.outbox.alerts()[0].fallback == "done")
            device_api.start()
            await wait_for(lambda: len(device_api.alerts) == 1, timeout=15)

        run_station(write_config(tmp_path, device_api.url), body, modem=modem, test_mode=True)
    assert [n for n, _ in modem.sent] == ["+33472000000"], "offline, a test reaches only the on-call line"
    assert "TEST" in modem.sent[0][1]
    [alert] = device_api.alerts.values()
    assert (alert["kind"], alert["sms_sent_by_device"], alert["sms_sent_to_contacts"]) == ("test", True, [])


def test_an_alert_closed_on_the_server_stops_its_siren_and_fixes(tmp_path, device_api: FakeDeviceApi) -> None:
    """With no after-close window (alerts.after_close_s = 0) everything stops at once; the
    window itself: test_one_recording.py."""
    cfg = write_config(tmp_path, device_api.url, "[evidence]\nmicrophone = \"none\"\n")
    cfg.write_text(cfg.read_text().replace("[alerts]\n", "[alerts]\nopen_check_interval_s = 1\nafter_close_s = 0\n"))

    async def body(station: Station):
        kept = station.raise_alert("prevention", "single")
        closed = station.raise_alert("alarm", "long")
        await wait_for(lambda: len(device_api.alerts) == 2)
        await wait_for(lambda: len(device_api.posts("/api/v1/alerts/" + closed + "/fixes")) >= 1)
        assert station.siren.playing
        device_api.closed.add(closed)  # resolved by the association: no longer in open_alerts
        await wait_for(lambda: station.outbox.alert(closed).closed, timeout=10)
        await wait_for(lambda: not station.siren.playing)
        # a fix queued before the close still goes (under duress the server keeps it)
        await wait_for(lambda: station.outbox.counts()["fixes_pending"] == 0)
        sent = len(device_api.posts("/api/v1/alerts/" + closed + "/fixes"))
        await asyncio.sleep(2.5)
        assert len(device_api.posts("/api/v1/alerts/" + closed + "/fixes")) == sent, "no fixes after closing"
        assert not station.outbox.alert(kept).closed

    run_station(cfg, body)


def test_a_queued_alert_survives_a_restart(tmp_path, device_api: FakeDeviceApi) -> None:
    cfg = write_config(tmp_path, device_api.url, "[modem]\nenabled = false\n")
    device_api.stop()

    async def first(station: Station):
        cid = station.raise_alert("emergency", "double")
        await wait_for(lambda: station.outbox.alert(cid).attempts >= 1)
        return cid

    cid = run_station(cfg, first)
    device_api.start()

    async def second(station: Station):
        await wait_for(lambda: cid in device_api.alerts)

    run_station(cfg, second)
    assert list(device_api.alerts) == [cid]


def test_fixes_follow_the_open_alert_and_heartbeats_report_buttons(tmp_path, device_api: FakeDeviceApi) -> None:
    async def body(station: Station):
        await wait_for(lambda: station.hub.sources_seen() == ["simulated"])
        cid = station.raise_alert("emergency", "api")
        await wait_for(lambda: len(device_api.fixes.get(cid, {})) >= 3, timeout=6)
        await wait_for(lambda: len(device_api.heartbeats) >= 1)
        station.write_status()
        return cid

    cfg = write_config(tmp_path, device_api.url, "[[buttons]]\nname = \"pendant\"\naddress = \"AA:BB:CC:DD:EE:FF\"\n")
    import json

    from fake_ble import make_backends
    scanner, client, *_ = make_backends({})  # the configured button is nowhere to be found
    run_station(cfg, body, client_backend=client, scanner_backend=scanner)
    hb = device_api.heartbeats[0]
    assert hb["button_connected"] is False and hb["station_version"] == "0.1.0"
    [real] = [b for b in hb["buttons"] if b["hardware_id"] == "AA:BB:CC:DD:EE:FF"]
    assert {k: real[k] for k in ("address", "connected", "battery_percent")} == {
        "address": "AA:BB:CC:DD:EE:FF", "connected": False, "battery_percent": None}
    assert real["since"].endswith("Z") and hb["microphone"] in ("ok", "unusable")
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["buttons"][0]["connected"] is False and status["server_reachable"] is True

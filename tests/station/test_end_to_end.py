"""End to end: a station (simulated button, fake gpsd, simulated modem) against a real
`balise serve --demo` with the console provider, whose outbox says what each contact gets."""

from __future__ import annotations

import asyncio

import httpx

from balise_station.config import load_config
from balise_station.gestures import ButtonMode, Edge
from balise_station.modem import GsmModem
from balise_station.siren import PacedSink, Siren
from balise_station.sim.modem import SimulatedModem
from balise_station.station import Station
from real_server import DEMO_PHONES, Server
from station_fakes import FakeGpsd, tap, wait_for

FIRST_CONTACT = "+33612345601"
DEMO_CANCEL_PIN = "1234"  # balise.demo
LYON = (45.764043, 4.835659)


def test_gestures_reach_the_contacts_and_offline_sms_is_not_sent_twice(tmp_path, server: Server, gpsd: FakeGpsd):
    gpsd.reports.append(gpsd.tpv(*LYON, eph=7.5))
    cfg_path = tmp_path / "station.toml"
    cfg_path.write_text(f"""
[server]
url = "http://127.0.0.1:{server.port}"
token = "{server.token}"
timeout_s = 10  # a real server on a busy machine can be slow to answer
[station]
state_dir = "state"
[alerts]
fallback_delay_s = 1.5
[location]
sources = ["gpsd"]
[location.gpsd]
port = {gpsd.port}
""")
    cfg = load_config(cfg_path, env={})

    def for_alert(server_id: int) -> list[dict]:
        return [r for r in server.outbox() if r["alert_id"] == server_id and r["purpose"] == "alert"]

    async def main(modem: SimulatedModem) -> None:
        station = Station(cfg, siren=Siren(PacedSink(), 30), simulated_buttons={"button": ButtonMode.EDGES},
                          modem_factory=lambda: GsmModem(modem.port, timeout_s=3))
        await station.start()
        try:
            await wait_for(lambda: station.hub.sources_seen() == ["gps"] and station.outbox.contacts())
            # one press, two presses, a long press; each decided before the next begins
            idle = lambda: station.router.next_deadline() is None  # noqa: E731
            # (each accepted before the next: two presses that reach the server at the same
            # instant may still raise two alerts, see alerts.actions)
            delivered = lambda n: len(station.outbox.alerts("state = 'delivered'")) == n  # noqa: E731
            tap(station, "button")
            await wait_for(lambda: len(station.gestures) == 1 and idle() and delivered(1))
            tap(station, "button", presses=2)
            await wait_for(lambda: len(station.gestures) == 2 and idle() and delivered(2))
            station.button_edge("button", Edge.PRESS)
            await wait_for(lambda: station.siren.playing)
            station.button_edge("button", Edge.RELEASE)
            await wait_for(lambda: len(station.outbox.alerts("state = 'delivered'")) == 3)
            rows = station.outbox.alerts()
            assert [r.kind for r in rows] == ["prevention", "emergency", "alarm"]
            server_ids = {station.outbox._query("SELECT server_id FROM alerts WHERE client_id = ?",
                                                (row.client_id,))[0][0] for row in rows}
            # One person, one alert: the double and the long press joined the first one and
            # escalated it (calls one by one, then everyone), never texting anyone twice.
            assert len(server_ids) == 1
            server_id = server_ids.pop()
            expected = {(c, p) for p in DEMO_PHONES for c in ("sms", "voice")}
            await wait_for(lambda: expected <= {(r["channel"], r["to"]) for r in for_alert(server_id)})
            # (the association's line gets its own SMS with the alarm: not a contact's)
            sms = [r for r in for_alert(server_id) if r["channel"] == "sms" and r["to"] in DEMO_PHONES]
            assert len(sms) == 3, "each contact gets one SMS, not two"
            # (the one-part SMS names the nearest place, or gives the coordinates)
            assert all("45.7640" in r["text"] or "Lyon" in r["text"] for r in sms), "the gpsd fix went with the alert"
            await station.siren.stop()
            # She cancels it (from any of her presses' client ids): the next press is a new alert.
            async with httpx.AsyncClient(timeout=60) as http:
                cancelled = await http.post(
                    f"http://127.0.0.1:{server.port}/api/v1/alerts/{rows[-1].client_id}/cancel",
                    json={"pin": DEMO_CANCEL_PIN}, headers={"Authorization": f"Bearer {server.token}"})
            assert cancelled.status_code == 200

            # the server goes down: the modem sends the SMS; the server comes back: no second SMS
            server.stop()
            before = len(server.outbox())
            tap(station, "button", presses=2)
            await wait_for(lambda: len(modem.sent) == 3)
            assert {n for n, _ in modem.sent} == DEMO_PHONES
            assert all("45.76404" in text for _, text in modem.sent)
            server.start(demo=False)
            await wait_for(lambda: len(station.outbox.alerts("state = 'delivered'")) == 4, timeout=40)
            last = station.outbox.alerts()[-1]
            assert (last.kind, last.sms_sent_by_device) == ("emergency", True)
            server_id = station.outbox._query("SELECT server_id FROM alerts WHERE client_id = ?",
                                              (last.client_id,))[0][0]
            await wait_for(lambda: {("voice", FIRST_CONTACT)} <= {
                (r["channel"], r["to"]) for r in for_alert(server_id)})
            await asyncio.sleep(1.0)
            assert [r for r in for_alert(server_id) if r["channel"] == "sms"] == [], "no duplicate SMS"
            assert len(server.outbox()) > before
        finally:
            await station.close()

    with SimulatedModem() as modem:
        asyncio.run(main(modem))

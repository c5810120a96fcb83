"""Bluetooth buttons through bleak's backend seam, with a fake backend (no Bluetooth here)."""

from __future__ import annotations

import asyncio

from balise_station import buttons as b
from balise_station.config import BluetoothConfig, ButtonConfig
from balise_station.gestures import Edge
from fake_ble import FakePeripheral, make_backends
from station_fakes import wait_for

BT = BluetoothConfig(scan_timeout_s=0.5, backoff_max_s=0.2, battery_interval_s=0.2)




def supervise(peripheral: FakePeripheral, body, kind: str | None = None):
    world = {peripheral.address: peripheral}
    scanner, client, created, scans = make_backends(world)
    edges: list[tuple[str, Edge]] = []
    changes: list[bool] = []

    async def main():
        sup = b.ButtonSupervisor(ButtonConfig("pendant", peripheral.address, kind or peripheral.kind), BT,
                                 lambda name, edge, t: edges.append((name, edge)),
                                 on_change=lambda: changes.append(sup.state.connected),
                                 client_backend=client, scanner_backend=scanner)
        task = asyncio.create_task(sup.run())
        try:
            await body(sup, peripheral)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return sup

    sup = asyncio.run(main())
    return sup, edges, changes, created, scans


def test_led_button_press_and_release_reach_the_decoder() -> None:
    async def body(sup, p):
        await wait_for(lambda: sup.state.connected)
        p.press()
        p.release()
        p.notify(b"\x07")  # unknown value: ignored

    sup, edges, *_ = supervise(FakePeripheral("AA:00:00:00:00:01"), body)
    assert edges == [("pendant", Edge.PRESS), ("pendant", Edge.RELEASE)]
    assert sup.state.battery_percent == 87


def test_itag_link_loss_is_silenced_on_every_connection() -> None:
    async def body(sup, p):
        await wait_for(lambda: sup.state.connected)
        assert p.link_loss_level == 0
        p.press()
        p.link_loss_level = 2  # e.g. the tag was reset while away
        p.drop_link(out_of_range=False)
        await wait_for(lambda: sup.connections == 2 and sup.state.connected)
        assert p.link_loss_level == 0
        p.notify(b"\x01")

    tag = FakePeripheral("AA:00:00:00:00:02", kind="itag", name="iTAG", battery=None)
    sup, edges, _, created, _ = supervise(tag, body)
    assert edges == [("pendant", Edge.PRESS), ("pendant", Edge.PRESS)]
    link_loss_writes = [w for w in tag.writes if w[0] == b.LINK_LOSS_SERVICE]
    assert link_loss_writes == [(b.LINK_LOSS_SERVICE, b.ALERT_LEVEL_CHAR, b"\x00")] * 2
    assert all(w[0] == b.LINK_LOSS_SERVICE for w in tag.writes), "never the Immediate Alert (it beeps)"
    assert sup.state.battery_percent is None


def test_out_of_range_button_is_reported_then_found_again_with_a_fresh_client() -> None:
    async def body(sup, p):
        await wait_for(lambda: sup.state.connected)
        p.drop_link(out_of_range=True)
        await wait_for(lambda: not sup.state.connected)
        await asyncio.sleep(0.8)  # several scans find nothing
        assert not sup.state.connected and sup.state.last_error == "not found by scan"
        p.in_range = True
        await wait_for(lambda: sup.state.connected)
        p.press()

    sup, edges, changes, created, scans = supervise(FakePeripheral("AA:00:00:00:00:03"), body)
    transitions = [c for i, c in enumerate(changes) if i == 0 or changes[i - 1] != c]
    assert transitions[-4:] == [True, False, True, False]  # connected, lost, found again, stopped
    assert sup.state.disconnects == 1
    assert len(created) == 2 and created[0] is not created[1]
    assert len(scans) >= 3, "scans again before reconnecting"
    assert edges == [("pendant", Edge.PRESS)]


def test_battery_is_read_again_while_connected() -> None:
    async def body(sup, p):
        await wait_for(lambda: sup.state.battery_percent == 87)
        p.battery = 41
        await wait_for(lambda: sup.state.battery_percent == 41)

    supervise(FakePeripheral("AA:00:00:00:00:04"), body)


def test_wrong_kind_is_an_error_not_a_crash() -> None:
    async def body(sup, p):
        await wait_for(lambda: "no itag button characteristic" in str(sup.state.last_error) or
                       sup.state.last_error == "BleakError")
        assert not sup.state.connected

    supervise(FakePeripheral("AA:00:00:00:00:05"), body, kind="itag")


def test_scan_for_buttons_finds_known_kinds() -> None:
    world = {
        "AA:00:00:00:00:06": FakePeripheral("AA:00:00:00:00:06"),
        "AA:00:00:00:00:07": FakePeripheral("AA:00:00:00:00:07", kind="itag", name="iTAG"),
    }
    scanner, *_ = make_backends(world)
    found = asyncio.run(b.scan_for_buttons(0.2, scanner_backend=scanner))
    assert sorted((f.address, f.kind) for f in found) == [
        ("AA:00:00:00:00:06", "led-button"), ("AA:00:00:00:00:07", "itag")]


def test_notifications_decode() -> None:
    assert b.edge_from_notification("led-button", b"\x01") is Edge.PRESS
    assert b.edge_from_notification("led-button", b"\x00") is Edge.RELEASE
    assert b.edge_from_notification("led-button", b"") is None
    assert b.edge_from_notification("itag", b"\x01") is Edge.PRESS
    assert b.guess_kind(["ffe0"], None) == "itag"
    assert b.guess_kind([], "Something") is None

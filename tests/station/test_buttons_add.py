"""`balise-station buttons add`: scan, list with signal strength, the button pressed is the one
added (fake bleak backend), addresses validated, the file written with a TOML library."""

from __future__ import annotations

import asyncio
import threading

import pytest

from balise_station import cli
from balise_station.config import load_config
from fake_ble import FakePeripheral, make_backends
from station_fakes import TOKEN


def config(tmp_path, extra: str = ""):
    p = tmp_path / "station.toml"
    p.write_text('# the volunteer\'s own comment\n[server]\nurl = "http://127.0.0.1:9"\n'
                 f'token = "{TOKEN}"\n[station]\nstate_dir = "state"\n{extra}')
    return p


@pytest.fixture
def radio(monkeypatch):
    world: dict[str, FakePeripheral] = {}
    scanner, client, created, _ = make_backends(world)
    monkeypatch.setitem(cli.BLE_BACKENDS, "scanner", scanner)
    monkeypatch.setitem(cli.BLE_BACKENDS, "client", client)
    return world


def press_when_listened(p: FakePeripheral) -> threading.Thread:
    """The volunteer presses the button once the station listens to it (its notifications are on)."""
    def run() -> None:
        for _ in range(1000):
            c = p.client
            if c is not None and c._notify:
                p.press()
                p.release()
                return
            threading.Event().wait(0.01)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_the_button_pressed_during_the_scan_is_the_one_added_and_bonded(tmp_path, radio, capsys) -> None:
    near = FakePeripheral("AA:00:00:00:00:01", rssi=-40)
    pressed = FakePeripheral("AA:00:00:00:00:02", kind="itag", name="iTAG", rssi=-70)
    radio.update({near.address: near, pressed.address: pressed})
    p = config(tmp_path)
    presser = press_when_listened(pressed)
    name = 'porte-clés "rouge" ☂'
    assert cli.main(["buttons", "add", "--config", str(p), "--name", name, "--seconds", "0.5"]) == 0
    presser.join(5)
    out = capsys.readouterr().out
    # both listed, strongest first, with their signal strength
    assert out.index("AA:00:00:00:00:01") < out.index("AA:00:00:00:00:02")
    assert "-40 dBm" in out and "-70 dBm" in out
    assert "bonding: bonded" in out
    [button] = load_config(p).buttons
    assert (button.name, button.address, button.kind) == (name, "AA:00:00:00:00:02", "itag")
    assert pressed.bonded and not near.bonded
    assert "# the volunteer's own comment" in p.read_text()
    assert near.client is None and pressed.client is None, "every link closed again"


def test_nothing_pressed_adds_nothing(tmp_path, radio, capsys) -> None:
    radio["AA:00:00:00:00:03"] = FakePeripheral("AA:00:00:00:00:03")
    p = config(tmp_path)
    before = p.read_text()
    assert cli.main(["buttons", "add", "--config", str(p), "--seconds", "0.3"]) == 1
    assert "no button was pressed" in capsys.readouterr().err
    assert p.read_text() == before


def test_a_button_without_security_is_added_unbonded(tmp_path, radio, capsys) -> None:
    tag = FakePeripheral("AA:00:00:00:00:04", bondable=False)
    radio[tag.address] = tag
    p = config(tmp_path)
    press_when_listened(tag)
    assert cli.main(["buttons", "add", "--config", str(p), "--seconds", "0.5"]) == 0
    assert "bonding: not supported" in capsys.readouterr().out
    assert [b.address for b in load_config(p).buttons] == ["AA:00:00:00:00:04"]


@pytest.mark.parametrize("address", ["hello", "AA:BB:CC:DD:EE", "AA:BB:CC:DD:EE:FG", "AA-BB-CC-DD-EE-FF", ""])
def test_a_bad_address_is_refused_in_one_line(tmp_path, capsys, address) -> None:
    p = config(tmp_path)
    before = p.read_text()
    assert cli.main(["buttons", "add", "--config", str(p), "--address", address or " "]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Bluetooth address" in err
    assert cli.main(["pair", "--config", str(p), "--address", address or " "]) == 2
    assert p.read_text() == before


@pytest.mark.parametrize("name", ['a"b', "a'b", 'tab\there', "back\\slash", "Élodie 🔔", "]]\n[server]"])
def test_names_with_quotes_and_unicode_round_trip(tmp_path, name) -> None:
    p = config(tmp_path)
    assert cli.main(["buttons", "add", "--config", str(p), "--address", "aa:bb:cc:dd:ee:0f", "--kind", "itag",
                     "--name", name]) == 0
    cfg = load_config(p)
    [button] = cfg.buttons
    assert (button.name, button.address) == (name, "AA:BB:CC:DD:EE:0F")
    assert cfg.server.url == "http://127.0.0.1:9"
    assert cli.main(["buttons", "add", "--config", str(p), "--address", "AA:BB:CC:DD:EE:10",
                     "--name", "second"]) == 0
    assert [b.name for b in load_config(p).buttons] == [name, "second"]


def test_a_bad_address_in_the_file_is_a_configuration_error(tmp_path, capsys) -> None:
    p = config(tmp_path, '[[buttons]]\nname = "x"\naddress = "hello"\n')
    assert cli.main(["status", "--config", str(p)]) == 2
    assert "buttons[0].address must be a Bluetooth address" in capsys.readouterr().err


def test_choose_by_press_returns_nothing_for_unreachable_buttons() -> None:
    from balise_station.buttons import FoundButton, choose_by_press

    world = {"AA:00:00:00:00:09": FakePeripheral("AA:00:00:00:00:09", in_range=False)}
    _, client, *_ = make_backends(world)
    chosen, unreachable = asyncio.run(choose_by_press(
        [FoundButton("AA:00:00:00:00:09", "x", "led-button", -60)], 0.3, client))
    assert chosen is None and unreachable == ["AA:00:00:00:00:09"]

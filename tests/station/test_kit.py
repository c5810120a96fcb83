"""`balise-station install` (systemd unit, own user, groups) and `selftest` on the simulated hardware."""

from __future__ import annotations

import configparser
import wave

from balise_station import cli
from balise_station.cli import main
from fake_ble import FakePeripheral, make_backends
from station_fakes import TOKEN, FakeDeviceApi


def test_install_writes_a_unit_running_as_its_own_user(tmp_path, capsys) -> None:
    assert main(["install", "--server", "https://balise.example.org", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    unit_path = tmp_path / "etc/systemd/system/balise-station.service"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(unit_path.read_text())
    svc = unit["Service"]
    assert svc["User"] == "balise" and svc["Group"] == "balise"
    assert set(svc["SupplementaryGroups"].split()) == {"bluetooth", "dialout", "audio"}
    assert "-m balise_station run --config /etc/balise/station.toml" in svc["ExecStart"]
    assert svc["Restart"] == "always" and svc["StateDirectory"] == "balise-station"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "time-sync.target" not in unit["Unit"].get("After", "")  # offline, it must still start
    config = tmp_path / "etc/balise/station.toml"
    assert 'url = "https://balise.example.org"' in config.read_text()
    assert (tmp_path / "var/lib/balise-station").stat().st_mode & 0o777 == 0o700
    assert "to run as root: useradd --system" in out and "--groups bluetooth,dialout,audio balise" in out
    # the written configuration is one the station reads
    from balise_station.config import load_config
    cfg = load_config(config, need_token=False)
    assert str(cfg.state_dir) == "/var/lib/balise-station"
    # a second install keeps the volunteer's configuration
    config.write_text(config.read_text() + "# mine\n")
    assert main(["install", "--server", "https://other.example.org", "--prefix", str(tmp_path)]) == 0
    assert config.read_text().endswith("# mine\n")


def test_install_dry_run_changes_nothing(tmp_path, capsys) -> None:
    assert main(["install", "--server", "https://balise.example.org", "--prefix", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would write" in out and "SupplementaryGroups=bluetooth dialout audio" in out
    assert "would run: systemctl enable balise-station.service" in out
    assert list(tmp_path.iterdir()) == []
    assert main(["install", "--server", "ftp://x", "--prefix", str(tmp_path)]) == 2


def test_selftest_on_the_simulated_hardware(tmp_path, device_api: FakeDeviceApi, capsys, monkeypatch) -> None:
    world = {"AA:00:00:00:00:01": FakePeripheral("AA:00:00:00:00:01")}
    scanner, *_ = make_backends(world)
    monkeypatch.setitem(cli.BLE_BACKENDS, "scanner", scanner)
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[server]\nurl = "{device_api.url}"\ntoken = "{TOKEN}"\n[station]\nstate_dir = "state"\n'
                   f'[siren]\noutput = "wav"\nwav_path = "{tmp_path / "selftest.wav"}"\n[modem]\nenabled = true\nsimulated = true\n'
                   '[evidence]\nmicrophone = "generated"\n'
                   '[[buttons]]\nname = "pendentif"\naddress = "AA:00:00:00:00:01"\n'
                   '[[buttons]]\nname = "clés"\naddress = "AA:00:00:00:00:02"\nkind = "itag"\n')
    assert main(["selftest", "--config", str(cfg), "--scan-seconds", "0.3"]) == 1  # the keys are not in range
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[ OK ] siren: played 1 s at 5 % volume (wav)"
    assert lines[1].startswith("[ OK ] microphone: 2 s recorded with generated, level ")
    assert lines[2] == "[ OK ] modem: answers AT"
    assert lines[3:6] == ["[ OK ] server: reachable", "[ OK ] token: accepted",
                          "[ OK ] contacts: 3 contact(s); association's on-call number: yes"]
    assert lines[6].startswith("[ OK ] test alert: accepted by the server")
    assert lines[7] == "[ OK ] button pendentif: AA:00:00:00:00:01 in range"
    assert lines[8].startswith("[FAIL] button clés: AA:00:00:00:00:02 not seen")
    assert lines[9] == "selftest: 8 part(s) ok, 1 FAILING"
    [alert] = device_api.alerts.values()
    assert alert["kind"] == "test"
    with wave.open(str(tmp_path / "selftest.wav")) as w:  # the siren did play (low volume)
        assert w.getnframes() == 16000


def test_selftest_says_what_is_wrong(tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[server]\nurl = "{device_api.url}"\ntoken = "revoked"\n[station]\nstate_dir = "state"\n'
                   '[siren]\noutput = "none"\n'
                   f'[modem]\nenabled = true\nport = "{tmp_path / "ttyUSB3"}"\n[evidence]\nmicrophone = "none"\n')
    assert main(["selftest", "--config", str(cfg), "--scan-seconds", "0.1"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] siren: disabled" in out
    assert "[FAIL] modem: cannot open" in out
    assert "[FAIL] token: refused (HTTP 401" in out
    assert "[FAIL] buttons: none configured" in out
    assert not device_api.alerts

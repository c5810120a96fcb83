"""The balise-station command: bad input gives one line and a non-zero exit; the commands work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balise_station.cli import main
from station_fakes import TOKEN, FakeDeviceApi

SRC = Path(__file__).parents[2] / "src"
DATA = Path(__file__).parents[1] / "data" / "gestures"


def cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "balise_station", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})})


def config(tmp_path: Path, url: str = "http://127.0.0.1:9", extra: str = "") -> Path:
    p = tmp_path / "station.toml"
    p.write_text(f'[server]\nurl = "{url}"\ntoken_file = "token"\n[alerts]\nfallback_delay_s = 1\n'
                 f'[location.fixed]\nlat = 48.85\nlon = 2.35\n{extra}')
    (tmp_path / "token").write_text(TOKEN + "\n")
    return p


@pytest.mark.parametrize(("content", "message"), [
    ("[server\n", "is not valid TOML"),
    ('[server]\nurl = "ftp://x"\ntoken = "t"\n', "server.url must be an http(s) URL"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[gestures]\ndouble_window_ms = "fast"\n',
     "gestures.double_window_ms must be a number"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[gestures]\nlong_threshold_ms = 99999\n',
     "gestures.long_threshold_ms must be between"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[[buttons]]\nname = "a"\naddress = "x"\nkind = "flic"\n',
     "buttons[0].kind must be one of"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[siren]\nvolum = 1\n', "unknown setting siren.volum"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[modem]\nenabled = true\n', "modem.port is required"),
    ('[server]\nurl = "http://x"\ntoken = "t"\n[location]\nsources = ["galileo"]\n', "unknown source"),
    ('[server]\nurl = "http://x"\ntoken_file = "missing"\n', "cannot read server.token_file"),
])
def test_bad_configuration_is_one_line(tmp_path, capsys, content: str, message: str) -> None:
    p = tmp_path / "station.toml"
    p.write_text(content)
    assert main(["status", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_token_is_one_line_for_run_and_said_by_status(tmp_path, capsys) -> None:
    p = tmp_path / "station.toml"
    p.write_text('[server]\nurl = "http://127.0.0.1:9"\n[station]\nstate_dir = "state"\n')
    assert main(["run", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert "no device token: pair the station" in err and err.count("\n") == 1
    assert main(["status", "--config", str(p)]) == 1
    assert "token: NONE (pair the station" in capsys.readouterr().out


def test_bad_arguments_are_one_line(capsys) -> None:
    assert main(["run"]) == 2
    assert main(["launch"]) == 2
    assert main(["status", "--config", "/nonexistent/station.toml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "configuration file not found" in err[2]


def test_token_from_the_environment(tmp_path, capsys) -> None:
    p = tmp_path / "station.toml"
    p.write_text('[server]\nurl = "http://x"\n')
    os.environ["BALISE_DEVICE_TOKEN"] = "from-env"
    try:
        assert main(["status", "--config", str(p)]) == 1  # valid, never started
    finally:
        del os.environ["BALISE_DEVICE_TOKEN"]
    assert "NEVER STARTED" in capsys.readouterr().out


def test_run_without_buttons_explains(tmp_path) -> None:
    r = cli("run", "--config", str(config(tmp_path)))
    assert r.returncode == 2 and "no [[buttons]]" in r.stderr


def test_simulate_decodes_a_trace_without_configuration() -> None:
    r = cli("simulate", "--trace", str(DATA / "double-then-hold.trace"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["250", "ms", "double", "button", "button", "1450", "ms", "long", "button",
                                "button", "as", "expected"]
    r = cli("simulate", "--trace", "/nonexistent.trace")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_pair_adds_a_button_to_the_configuration(tmp_path) -> None:
    p = config(tmp_path)
    r = cli("pair", "--config", str(p), "--address", "AA:BB:CC:DD:EE:01", "--kind", "itag", "--name", "keys")
    assert r.returncode == 0, r.stderr
    r = cli("pair", "--config", str(p), "--address", "AA:BB:CC:DD:EE:01", "--kind", "itag", "--name", "other")
    assert r.returncode == 2 and "already" in r.stderr
    from balise_station.config import load_config
    [button] = load_config(p).buttons
    assert (button.name, button.kind, button.address) == ("keys", "itag", "AA:BB:CC:DD:EE:01")


def test_simulate_a_trace_through_the_whole_station_then_status(tmp_path, device_api: FakeDeviceApi) -> None:
    p = config(tmp_path, device_api.url)
    r = cli("simulate", "--config", str(p), "--trace", str(DATA / "double-tap.trace"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert " double  alert " in r.stdout
    [alert] = device_api.alerts.values()
    assert (alert["kind"], alert["gesture"], alert["fixes"][0]["source"]) == ("emergency", "double", "fixed")
    r = cli("simulate", "--config", str(p), "--trace", str(DATA / "itag-triple.trace"), "--test", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(a["kind"] for a in device_api.alerts.values()) == ["emergency", "test"]
    assert TOKEN not in r.stderr
    r = cli("status", "--config", str(p))
    assert r.returncode == 1  # not running any more
    assert "NOT RUNNING" in r.stdout and "0 alert(s) waiting" in r.stdout
    r = cli("status", "--config", str(p), "--json")
    assert json.loads(r.stdout)["queue"]["alerts_pending"] == 0


def test_enrol_against_a_server_without_evidence_says_so(tmp_path, device_api: FakeDeviceApi) -> None:
    p = config(tmp_path, device_api.url)
    r = cli("enrol", "--config", str(p))
    assert r.returncode == 1 and "not enrolled: device key not registered: HTTP 404" in r.stdout
    key = tmp_path / "xdg-state" / "balise-station" / "evidence-device-key.pem"  # the default: outside the tree
    assert key.stat().st_mode & 0o077 == 0
    key.write_text("not a key")
    r = cli("enrol", "--config", str(p))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unusable" in r.stderr

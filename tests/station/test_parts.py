"""Each part of the station tells the truth: the modem (an AT probe), the server (a check every
few seconds), the token; failures are retried while running; pairing stores the token and the
contacts; a 401 in the middle of an offline queue loses nothing."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from balise_station.cli import main
from balise_station.config import load_config
from balise_station.gestures import ButtonMode
from balise_station.modem import GsmModem, probe
from balise_station.outbox import Outbox
from balise_station.siren import PacedSink, Siren
from balise_station.sim.modem import SimulatedModem
from balise_station.station import Station
from station_fakes import TOKEN, FakeDeviceApi, wait_for


def write_config(tmp_path: Path, url: str, extra: str = "", token_line: str = 'token_file = "token"') -> Path:
    p = tmp_path / "station.toml"
    p.write_text(f'[server]\nurl = "{url}"\n{token_line}\ntimeout_s = 1\ncheck_interval_s = 1\n'
                 f'check_timeout_s = 0.5\n[station]\nstate_dir = "state"\n[alerts]\nfallback_delay_s = 0.5\n'
                 f'[location.fixed]\nlat = 48.85\nlon = 2.35\n[evidence]\nmicrophone = "none"\n{extra}')
    return p


def run(cfg_path: Path, body, modem: SimulatedModem | None = None):
    cfg = load_config(cfg_path, env={})

    async def go():
        factory = (lambda: GsmModem(modem.port, timeout_s=1)) if modem else None
        station = Station(cfg, siren=Siren(PacedSink(), max_duration_s=30), modem_factory=factory,
                          simulated_buttons={"sim": ButtonMode.EDGES})
        await station.start()
        try:
            return await body(station)
        finally:
            await station.close()

    return asyncio.run(go())


# -- the modem ----------------------------------------------------------------------
def test_the_modem_probe_is_a_real_at_exchange(tmp_path) -> None:
    with SimulatedModem() as modem:
        assert probe(modem.port, timeout_s=2) == ("ok", "")
        assert "AT" in modem.commands
        modem.silent = True
        state, why = probe(modem.port, timeout_s=0.3)
        assert state == "unusable" and why == f"no answer to AT on {modem.port}"
    state, why = probe(str(tmp_path / "ttyUSB9"), timeout_s=0.3)
    assert state == "unusable" and "cannot open" in why


def test_a_failed_modem_send_is_retried_while_running_and_reported(tmp_path, device_api: FakeDeviceApi) -> None:
    device_api.stop()  # offline: the modem must text
    cfg = write_config(tmp_path, device_api.url, "[modem]\nenabled = true\nport = \"/dev/null\"\nretry_s = 1\n"
                       "check_interval_s = 3600\n")
    (tmp_path / "token").write_text(TOKEN)
    ob = Outbox(tmp_path / "state" / "station.sqlite3")
    ob.save_contacts(device_api.contacts)  # the copy downloaded at pairing
    ob.close()

    with SimulatedModem(fail_next_sends=2) as modem:
        async def body(station: Station):
            await wait_for(lambda: station.modem_state == "ok")  # probed at start
            cid = station.raise_alert("emergency", "double")
            await wait_for(lambda: station.modem_state == "unusable")
            assert station.heartbeat_payload()["modem"] == "unusable"
            # no restart: tried again until both accepted contacts have their SMS
            await wait_for(lambda: len(modem.sent) == 2 and station.outbox.alert(cid).fallback == "done")
            await wait_for(lambda: station.modem_state == "ok")
            device_api.start()  # the server is back: the alert, and the modem's state, reach it
            await wait_for(lambda: cid in device_api.alerts)
            await wait_for(lambda: any(h.get("modem") == "ok" for h in device_api.heartbeats))
            return cid

        cid = run(cfg, body, modem)
    assert sorted(n for n, _ in modem.sent) == ["+33612345678", "+447700900123"]
    assert device_api.alerts[cid]["sms_sent_by_device"] is True


def test_status_probes_the_modem_port_and_says_unusable(tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    cfg = write_config(tmp_path, device_api.url, f"[modem]\nenabled = true\nport = \"{tmp_path / 'ttyUSB7'}\"\n"
                       '[[buttons]]\nname = "pendentif"\naddress = "AA:BB:CC:DD:EE:01"\n')
    (tmp_path / "token").write_text(TOKEN)
    assert main(["status", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "station: NEVER STARTED" in out
    assert "button pendentif (led-button, AA:BB:CC:DD:EE:01): DISCONNECTED" in out
    assert "modem: UNUSABLE (cannot open" in out
    assert "token: accepted" in out and "server: reachable" in out


def test_status_checks_the_token_with_the_server(tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    cfg = write_config(tmp_path, device_api.url)
    (tmp_path / "token").write_text("revoked-token")
    assert main(["status", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "token: REFUSED by the server" in out
    device_api.stop()
    assert main(["status", "--config", str(cfg)]) == 1
    assert "server: UNREACHABLE" in capsys.readouterr().out


def test_a_modem_failure_that_healed_offline_still_reaches_the_server(tmp_path, device_api: FakeDeviceApi) -> None:
    device_api.stop()
    cfg = write_config(tmp_path, device_api.url, "[modem]\nenabled = true\nport = \"/dev/null\"\n"
                       "check_interval_s = 3600\n")
    (tmp_path / "token").write_text(TOKEN)
    with SimulatedModem() as modem:
        async def body(station: Station):
            await wait_for(lambda: station.modem_state == "ok")
            modem.silent = True
            assert await station.check_modem() == "unusable"
            modem.silent = False
            assert await station.check_modem() == "ok"  # healed while the server was away
            assert station.heartbeat_payload()["modem"] == "unusable", "not reported yet"
            device_api.start()
            await wait_for(lambda: [h.get("modem") for h in device_api.heartbeats][-2:] == ["unusable", "ok"])

        run(cfg, body, modem)


# -- the microphone ------------------------------------------------------------------
def _running_status(cfg_path: Path, **extra) -> None:
    """What a running, healthy station last wrote (its pid: this process, alive)."""
    import os
    import time

    cfg = load_config(cfg_path, env={})
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.status_path.write_text(json.dumps({
        "pid": os.getpid(), "version": "test", "updated_ts": time.time(), "started_ts": time.time(),
        "buttons": [{"name": "sim", "hardware_id": "simulated:sim", "kind": "simulated", "connected": True}],
        "last_server_success_ts": time.time(), **extra}))


def _silent_wav(path: Path) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    return path


def test_status_records_a_moment_to_check_the_microphone_and_fails_on_a_dead_input(
        tmp_path, device_api: FakeDeviceApi, capsys, monkeypatch) -> None:
    (tmp_path / "token").write_text(TOKEN)
    cfg = write_config(tmp_path, device_api.url)
    cfg.write_text(cfg.read_text().replace('microphone = "none"', 'microphone = "generated"'))
    _running_status(cfg)
    assert main(["status", "--config", str(cfg)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "microphone: ok (0.5 s recorded with generated, level " in out

    # an input that gives only zeros (muted, unplugged): unusable, and status says so in its exit
    _silent_wav(tmp_path / "silence.wav")
    cfg.write_text(cfg.read_text().replace('microphone = "generated"',
                                           'microphone = "wav"\nwav_path = "silence.wav"'))
    assert main(["status", "--config", str(cfg)]) == 1
    assert "microphone: UNUSABLE (wav: 0.5 s recorded, but only silence (muted input?))" in capsys.readouterr().out

    # no capture tool at all
    cfg.write_text(cfg.read_text().replace('microphone = "wav"', 'microphone = "arecord"')
                   .replace('wav_path = "silence.wav"\n', ""))
    monkeypatch.setattr("balise_station.recording.shutil.which", lambda tool: None)
    assert main(["status", "--config", str(cfg)]) == 1
    assert "microphone: UNUSABLE (arecord: no capture tool" in capsys.readouterr().out


def test_status_leaves_the_microphone_to_a_recording_in_progress(tmp_path, device_api: FakeDeviceApi,
                                                                 capsys, monkeypatch) -> None:
    (tmp_path / "token").write_text(TOKEN)
    cfg = write_config(tmp_path, device_api.url)
    cfg.write_text(cfg.read_text().replace('microphone = "none"', 'microphone = "generated"'))
    _running_status(cfg, evidence={"enabled": True, "enrolled": True, "recording_alerts": ["a-1"]})

    def not_now(*args):
        raise AssertionError("the microphone was opened during a recording")

    monkeypatch.setattr("balise_station.kit.check_microphone", not_now)
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "microphone: in use by the recording in progress (not tested)" in out and "RECORDING (1)" in out


# -- the server ----------------------------------------------------------------------
def test_a_lost_server_is_noticed_within_the_check_interval_and_timeout(tmp_path, device_api: FakeDeviceApi) -> None:
    defaults = load_config(write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"').with_name(
        "station.toml"), env={}).server
    cfg = write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"')
    cfg.write_text(cfg.read_text().replace("check_interval_s = 1\ncheck_timeout_s = 0.5\n", ""))
    defaults = load_config(cfg, env={}).server
    assert defaults.check_interval_s + defaults.check_timeout_s <= 10, "the issue's bound, by default"
    cfg = write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"')

    async def body(station: Station):
        await wait_for(lambda: station.sender.server_reachable is True)
        device_api.delay_s = 5  # a server that hangs (no connection refused to make it easy)
        t0 = asyncio.get_running_loop().time()
        await wait_for(lambda: station.sender.server_reachable is False, timeout=10)
        lost_after = asyncio.get_running_loop().time() - t0
        device_api.delay_s = 0
        await wait_for(lambda: station.sender.server_reachable is True, timeout=10)
        return lost_after

    lost_after = run(cfg, body)
    assert lost_after < 1 + 0.5 + 5, "noticed by the check, not by the next heartbeat"


# -- pairing ---------------------------------------------------------------------------
def test_pairing_stores_the_token_0600_and_the_contacts(tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    cfg = write_config(tmp_path, device_api.url, token_line="")
    device_api.pair_codes["K7P-2QX"] = "new-token-1"
    assert main(["pair", "K7P-2QX", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    token = tmp_path / "state" / "device-token"
    assert token.read_text().strip() == "new-token-1" and "new-token-1" not in out
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert "contacts downloaded for the modem: 3" in out and "on-call number: yes" in out
    ob = Outbox(tmp_path / "state" / "station.sqlite3")
    assert ob.contacts()[0]["association"]["on_call_number"] == "+33472000000"
    ob.close()
    assert load_config(cfg, env={}).server.token == "new-token-1"  # no token setting needed

    # re-pairing replaces the token and the contacts
    device_api.contacts = {**device_api.contacts, "contacts": device_api.contacts["contacts"][:1]}
    device_api.pair_codes["ZZZ-111"] = "new-token-2"
    assert main(["pair", "ZZZ-111", "--config", str(cfg)]) == 0
    assert token.read_text().strip() == "new-token-2"
    ob = Outbox(tmp_path / "state" / "station.sqlite3")
    assert len(ob.contacts()[0]["contacts"]) == 1
    ob.close()


def test_pairing_with_a_used_or_expired_code_fails_clearly(tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    cfg = write_config(tmp_path, device_api.url, token_line="")
    device_api.pair_codes["OLD-000"] = "expired"
    assert main(["pair", "OLD-000", "--config", str(cfg)]) == 1
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("balise-station:")]
    assert ours == ["balise-station: pairing refused: this code has expired (ask the console for a new one)"]
    device_api.pair_codes["ONE-111"] = "t1"
    assert main(["pair", "ONE-111", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["pair", "ONE-111", "--config", str(cfg)]) == 1  # used once already
    assert capsys.readouterr().err == ("balise-station: pairing refused: unknown or already used code "
                                       "(ask the console for a new one)\n")
    assert (tmp_path / "state" / "device-token").read_text().strip() == "t1"


def test_a_401_in_an_offline_queue_loses_nothing_and_re_pairing_delivers_once(
        tmp_path, device_api: FakeDeviceApi, capsys) -> None:
    """The server's data was re-created: the old token is refused. The queued alerts stay, the
    modem texts the contacts, status says so (exit 1); pairing again delivers each alert once."""
    cfg = write_config(tmp_path, device_api.url, "[modem]\nenabled = true\nport = \"/dev/null\"\n",
                       token_line="")
    device_api.pair_codes["AAA-111"] = "old-token"
    assert main(["pair", "AAA-111", "--config", str(cfg)]) == 0
    device_api.tokens = {"re-created-server-token"}  # the old token no longer exists
    device_api.stop()  # and first, offline: alerts queue up

    with SimulatedModem() as modem:
        async def body(station: Station):
            first = station.raise_alert("emergency", "double")
            await wait_for(lambda: station.outbox.alert(first).attempts >= 1)
            device_api.start()
            second = station.raise_alert("prevention", "single")
            await wait_for(lambda: station.sender.token_refused)
            await wait_for(lambda: station.outbox.counts()["alerts_refused"] == 2)
            await wait_for(lambda: len(modem.sent) >= 2)  # the emergency reached the contacts by SMS
            station.write_status()
            assert main(["status", "--config", str(cfg)]) == 1
            out = capsys.readouterr().out
            assert "REFUSES THIS STATION'S TOKEN" in out and "ALERTS NOT ACCEPTED BY THE SERVER: 2" in out
            assert "token: REFUSED" in out
            # the volunteer pairs the station again; the running station takes the new token
            device_api.pair_codes["BBB-222"] = "fresh-token"
            await asyncio.to_thread(main, ["pair", "BBB-222", "--config", str(cfg)])
            await wait_for(lambda: first in device_api.alerts and second in device_api.alerts)
            await wait_for(lambda: [a.state for a in station.outbox.alerts()] == ["delivered", "delivered"])
            await wait_for(lambda: not station.sender.token_refused)
            return first, second

        first, second = run(cfg, body, modem)
    posts = [b["client_id"] for b in device_api.posts("/api/v1/alerts") if b and "client_id" in b]
    accepted = [cid for cid in posts if cid in device_api.alerts]
    assert sorted(device_api.alerts) == sorted([first, second])
    assert device_api.alerts[first]["sms_sent_by_device"] is True
    assert len(device_api.alerts) == 2 and accepted.count(first) >= 1
    ob = Outbox(tmp_path / "state" / "station.sqlite3")
    assert [a.state for a in ob.alerts()] == ["delivered", "delivered"]  # none dropped
    ob.close()
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["token_refused"] is False


# -- a tap during the siren --------------------------------------------------------------
def test_a_tap_during_the_siren_gets_feedback_at_once(tmp_path, device_api: FakeDeviceApi) -> None:
    from balise_station.gestures import Edge
    from station_fakes import tap

    cfg = write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"')

    async def body(station: Station):
        station.raise_alert("alarm", "long")
        assert station.siren.playing and not station.siren.muted
        station.button_edge("sim", Edge.PRESS)
        assert station.siren.muted, "silent at the press itself, before the gesture is decided"
        station.button_edge("sim", Edge.RELEASE)
        await wait_for(lambda: not station.siren.playing)
        await wait_for(lambda: station.siren.acknowledged == 1)  # two soft beeps: the tap was taken
        assert station.siren.sink.bytes_written > 0
        # a double press during the siren is an emergency alert: the siren comes back
        station.raise_alert("alarm", "long")
        await wait_for(lambda: station.siren.playing)
        tap(station, presses=2)
        await wait_for(lambda: len(station.outbox.alerts()) == 3)
        assert station.siren.playing and not station.siren.muted
        assert station.siren.acknowledged == 1

    run(cfg, body)


def test_the_contacts_copy_follows_every_heartbeat(tmp_path, device_api: FakeDeviceApi) -> None:
    cfg = write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"')
    cfg.write_text(cfg.read_text().replace("check_interval_s = 1\n", "check_interval_s = 3600\n"))

    def contact_gets() -> int:
        return sum(1 for m, p, _ in list(device_api.requests) if m == "GET" and p == "/api/v1/contacts")

    async def body(station: Station):
        await wait_for(lambda: len(device_api.heartbeats) >= 1 and station.outbox.contacts() is not None)
        await wait_for(lambda: not station._refreshing)
        device_api.contacts = {**device_api.contacts, "contacts": device_api.contacts["contacts"][:1]}
        before = contact_gets()
        station._heartbeat_now.set()  # e.g. a button dropped: a heartbeat goes now
        await wait_for(lambda: len(device_api.heartbeats) >= 2)
        await wait_for(lambda: contact_gets() > before)
        await wait_for(lambda: len(station.outbox.contacts()[0]["contacts"]) == 1)

    run(cfg, body)


def test_a_board_without_a_clock_leaves_the_buttons_since_out(tmp_path, device_api: FakeDeviceApi) -> None:
    """The server refuses times before 2020, and with them the whole heartbeat."""
    cfg = load_config(write_config(tmp_path, device_api.url, token_line=f'token = "{TOKEN}"'), env={})
    station = Station(cfg, simulated_buttons={"sim": ButtonMode.EDGES}, wall=lambda: 86400.0)  # 2 January 1970
    try:
        [button] = station.heartbeat_payload()["buttons"]
        assert "since" not in button and button["connected"] is True
        assert station.heartbeat_payload()["microphone"] == "absent"  # evidence.microphone = "none"
    finally:
        station.outbox.close()
    station = Station(cfg, simulated_buttons={"sim": ButtonMode.EDGES})
    try:
        assert station.heartbeat_payload()["buttons"][0]["since"].startswith("20")
    finally:
        station.outbox.close()

"""The ``balise-station`` command: run, pair, enrol, status, simulate.

Bad input (configuration, arguments) gets one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from balise_station import __version__
from balise_station.config import BUTTON_KINDS, ConfigError, NoTokenError, StationConfig, load_config
from balise_station.gestures import ButtonMode, DecodedGesture, GestureDecoder, TraceError, parse_trace
from balise_station.i18n import _, activate_for, ngettext, number

EXIT_OK, EXIT_DEGRADED, EXIT_USAGE = 0, 1, 2
STATUS_CAPTURE_S = 0.5  # what `status` records to check the microphone (selftest records longer)


class UsageError(Exception):
    pass


def _fail(message: str) -> int:
    print(f"balise-station: {message}", file=sys.stderr)
    return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise UsageError(message)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry request URLs


def _modem_factory(cfg: StationConfig, stack: contextlib.ExitStack) -> Any:
    from balise_station.modem import GsmModem

    if not cfg.modem.enabled:
        return None
    port = cfg.modem.port
    if cfg.modem.simulated:
        from balise_station.sim.modem import SimulatedModem

        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        sim = stack.enter_context(SimulatedModem(outbox_path=cfg.state_dir / "simulated-sms.jsonl"))
        port = sim.port
    return lambda: GsmModem(port, cfg.modem.baudrate, cfg.modem.timeout_s)


async def _run_station(station: Any, feeder: Any = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, station.stop)
    await station.start()
    try:
        if feeder is not None:
            await feeder(station)
        else:
            await station._stopping.wait()
    finally:
        await station.close()


# -- run ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from balise_station.station import Station

    cfg = load_config(args.config)
    _setup_logging(cfg.log_level)
    if not cfg.buttons:
        return _fail(_("no [[buttons]] in the configuration: add one with 'balise-station buttons add' "
                       "or try 'balise-station simulate'"))
    with contextlib.ExitStack() as stack:
        station = Station(cfg, modem_factory=_modem_factory(cfg, stack), test_mode=args.test or None)
        asyncio.run(_run_station(station))
    return EXIT_OK


# -- status ---------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """What the running station last reported, and live checks of each part: the token and
    the server (a call that needs the token), the modem (an AT probe), the microphone."""
    try:
        cfg = load_config(args.config)
    except NoTokenError:
        cfg = load_config(args.config, need_token=False)  # not paired yet: status says so
    try:
        status: dict[str, Any] = json.loads(cfg.status_path.read_text())
        status["started"] = True
    except FileNotFoundError:
        status = {"started": False, "version": __version__,
                  "buttons": [{"name": b.name, "kind": b.kind, "hardware_id": b.address, "connected": False}
                              for b in cfg.buttons]}
    except (OSError, json.JSONDecodeError) as exc:
        return _fail(_("cannot read {path}: {error}").format(path=cfg.status_path, error=exc))
    if cfg.db_path.exists():
        from balise_station.outbox import Outbox

        ob = Outbox(cfg.db_path)
        status["queue"] = ob.counts()
        contacts = ob.contacts()
        ob.close()
        status["contacts"] = len(contacts[0].get("contacts", [])) if contacts else None
        status["contacts_fetched_ts"] = max(contacts[1], status.get("contacts_fetched_ts") or 0) if contacts else None
    age = time.time() - status.get("updated_ts", 0)
    running = status["started"] and age < 30 and _pid_alive(status.get("pid"))
    status["running"] = running
    status["checks"] = checks = _live_checks(cfg, status, running)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(_status_text(status, age))
    healthy = (running and status["buttons"] and all(b["connected"] for b in status["buttons"])
               and checks["token"] == "accepted" and checks["server"] == "reachable"
               and checks["modem"] in ("ok", "absent") and checks["microphone"] in ("ok", "disabled", "recording")
               and not status.get("queue", {}).get("alerts_refused"))
    return EXIT_OK if healthy else EXIT_DEGRADED


def _live_checks(cfg: StationConfig, status: dict[str, Any], running: bool) -> dict[str, str]:
    """Each part checked now, not taken from the station's last report (except a simulated
    modem, which lives inside the running station, and a modem the running station probed
    recently: a probe must not cut into an SMS it is sending)."""
    import httpx

    out: dict[str, str] = {}
    if not cfg.server.token:
        out["token"], out["server"] = "none", "not checked"
    else:
        try:
            r = httpx.get(cfg.server.url + "/api/v1/contacts", timeout=cfg.server.timeout_s,
                          headers={"Authorization": f"Bearer {cfg.server.token}", "Accept": "application/json",
                                   "User-Agent": f"balise-station/{__version__}"})
            code = r.status_code
        except httpx.HTTPError as exc:
            code, out["server_error"] = None, type(exc).__name__
        if code is None or code >= 500:
            out["server"], out["token"] = "unreachable", "not checked"
            out.setdefault("server_error", f"HTTP {code}")
        else:
            out["server"] = "reachable"
            out["token"] = ("accepted" if code == 200 else "refused" if code in (401, 403, 410)
                            else f"HTTP {code}")
    m = cfg.modem
    recent = running and (time.time() - (status.get("modem_checked_ts") or 0)) < 2 * m.check_interval_s + 10
    if not m.enabled:
        out["modem"] = "absent"
    elif m.simulated or recent:
        out["modem"] = status.get("modem_state", "unknown") if running else "not running (simulated)"
        out["modem_error"] = status.get("modem_error", "") if running else ""
    else:
        from balise_station.modem import probe

        out["modem"], out["modem_error"] = probe(m.port, m.baudrate, min(m.timeout_s, 3.0))
    if not cfg.evidence.enabled:
        out["microphone"] = "disabled"
    elif running and ((status.get("evidence") or {}).get("recording_alerts") or status.get("queue", {}).get("recordings")):
        out["microphone"] = "recording"  # the recording has the microphone: not disturbed by a test capture
    else:
        from balise_station.kit import check_microphone

        # a short capture through the recorder's own seam: the input itself, not only the tool
        check = check_microphone(cfg, STATUS_CAPTURE_S)
        out["microphone"] = "ok" if check.ok else "unusable"
        out["microphone_detail"] = check.detail
    return out


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(ts: float | None) -> str:
    if not ts:
        return _("never")
    s = int(time.time() - ts)
    if s < 120:
        return _("{n} s ago").format(n=s)
    return _("{n} min ago").format(n=s // 60) if s < 7200 else _("{n} h ago").format(n=s // 3600)


def _status_text(st: dict[str, Any], age: float) -> str:
    ck = st["checks"]
    if not st["started"]:
        head = _("station: NEVER STARTED (no status file in the state directory)")
    else:
        head = (_("station {version}: running").format(version=st.get("version")) if st["running"] else
                _("station {version}: NOT RUNNING (last seen {seconds} s ago)").format(
                    version=st.get("version"), seconds=int(age)))
        head += _(" (test mode)") if st.get("test_mode") else ""
    lines = [head]
    for b in st.get("buttons", []):
        state = _("connected") if b["connected"] and st["running"] else _("DISCONNECTED")
        if b.get("battery_percent") is not None:
            state += _(", battery {percent}%").format(percent=b["battery_percent"])
        if b.get("last_error") and not b["connected"]:
            error = _("not found by scan") if b["last_error"] == "not found by scan" else b["last_error"]
            state += f" ({error})"
        lines.append(_("button {name} ({kind}, {address}): {state}").format(
            name=b["name"], kind=b.get("kind"), address=b.get("hardware_id"), state=state))
    if not st.get("buttons"):
        lines.append(_("buttons: NONE (add one with 'balise-station buttons add')"))
    token = {"accepted": _("accepted by the server"), "none": _("NONE (pair the station: balise-station pair CODE)"),
             "refused": _("REFUSED by the server (pair the station again)"),
             "not checked": _("not checked (server unreachable)")}.get(ck["token"], ck["token"])
    lines.append(_("token: {state}").format(state=token))
    server = (_("reachable") if ck["server"] == "reachable" else _("not checked") if ck["server"] == "not checked"
              else _("UNREACHABLE ({error})").format(error=ck.get("server_error", "")))
    if st.get("token_refused") or ck["token"] == "refused":
        server += _(", REFUSES THIS STATION'S TOKEN (pair the station again)")
    lines.append(_("server: {state}; station's last success: {ago}").format(
        state=server, ago=_ago(st.get("last_server_success_ts"))))
    q = st.get("queue", {})
    if q.get("alerts_refused"):
        lines.append(_("ALERTS NOT ACCEPTED BY THE SERVER: {n} (kept, tried again; the modem texts the contacts "
                       "when there is one)").format(n=q["alerts_refused"]))
    lines.append(_("queue: {alerts} alert(s) waiting, {open} open, {fixes} fix(es), {dropped} refused by the server")
                 .format(alerts=q.get("alerts_pending", 0), open=q.get("alerts_open", 0),
                         fixes=q.get("fixes_pending", 0), dropped=q.get("dropped", 0)))
    modem = ck["modem"]
    modem_text = {"ok": _("ok (answers AT)"), "absent": _("none configured"), "unknown": _("not checked yet"),
                  "not running (simulated)": _("simulated, station not running")}.get(modem)
    if modem_text is None:
        modem_text = (_("UNUSABLE ({error})").format(error=ck.get("modem_error") or _("no answer"))
                      if modem == "unusable" else modem)
    lines.append(_("modem: {state}").format(state=modem_text))
    mic = ck["microphone"]
    mic_text = {"disabled": _("disabled"), "recording": _("in use by the recording in progress (not tested)"),
                "ok": _("ok ({detail})").format(detail=ck.get("microphone_detail"))}.get(
        mic, _("UNUSABLE ({error})").format(error=ck.get("microphone_detail")))
    lines.append(_("microphone: {state}").format(state=mic_text))
    ev = st.get("evidence") or {}
    recording = ev.get("recording_alerts") or []
    if ev and ev.get("enabled", True):
        parts = [_("enrolled") if ev.get("enrolled", True) else
                 _("NOT ENROLLED: {error}").format(error=ev["error"]) if ev.get("error") else _("NOT ENROLLED")]
        if ev.get("keys_error"):
            parts.append(_("SERVER KEYS NOT FOLLOWED: {error}").format(error=ev["keys_error"]))
        if recording:
            parts.append(_("RECORDING ({n})").format(n=len(recording)))
        waiting = _("{n} record(s) waiting for upload").format(n=q.get("evidence_pending", 0))
        if q.get("evidence_rejected"):
            waiting += _(", {n} REFUSED by the server (kept)").format(n=q["evidence_rejected"])
        parts.append(waiting)
        lines.append(_("evidence: {state}").format(state="; ".join(parts)))
    contacts = st.get("contacts")
    lines.append(_("contacts: {n} (refreshed: {ago}); location: {sources}").format(
        n=contacts if contacts is not None else _("NONE YET (the modem cannot help)"),
        ago=_ago(st.get("contacts_fetched_ts")),
        sources=", ".join(st.get("location_sources") or []) or _("none")))
    if st.get("siren_playing"):
        lines.append(_("siren: PLAYING"))
    return "\n".join(lines)


# -- enrol -------------------------------------------------------------------------------
def cmd_enrol(args: argparse.Namespace) -> int:
    """Creates the evidence device key if needed, registers it, pins the server's keys."""
    from balise_evidence.crypto import CryptoError
    from balise_station.api import DeviceApi
    from balise_station.evidence import enrol, load_or_create_device_key
    from balise_station.outbox import Outbox

    cfg = load_config(args.config)
    _setup_logging("WARNING")
    try:
        key = load_or_create_device_key(cfg.device_key_path)
    except (OSError, CryptoError) as exc:
        return _fail(_("evidence device key {path} unusable: {error}").format(path=cfg.device_key_path, error=exc))
    outbox = Outbox(cfg.db_path)

    async def go() -> Any:
        api = DeviceApi(cfg.server.url, cfg.server.token, cfg.server.timeout_s)
        try:
            return await enrol(api, outbox, key)
        finally:
            await api.aclose()

    try:
        result = asyncio.run(go())
    finally:
        outbox.close()
    print(_("device key: {fingerprint}").format(fingerprint=key.fingerprint))
    if not result.done:
        print(_("not enrolled: {error}").format(error=result.error))
        return EXIT_DEGRADED
    print(_("server seal key (pinned): {fingerprint}").format(fingerprint=result.keys.seal_fingerprint))
    print(_("server signing key (pinned): {fingerprint}").format(fingerprint=result.keys.signing_fingerprint))
    return EXIT_OK


# -- pair -------------------------------------------------------------------------------
def _write_secret(path: Path, text: str) -> None:
    """Written whole (a new file renamed over the old one), mode 0600 from the start."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _pair_refusal(status: int, body: Any) -> str:
    """One line for a refused pairing, in the station's language: the server's error code,
    not its English message, says which."""
    error = body.get("error") if isinstance(body, dict) else None
    known = {"invalid_code": _("pairing refused: unknown or already used code (ask the console for a new one)"),
             "expired_code": _("pairing refused: this code has expired (ask the console for a new one)"),
             "rate_limited": _("pairing refused: too many wrong codes from here; wait a minute and try again")}
    if error in known:
        return known[error]
    message = body.get("message") if isinstance(body, dict) else ""
    return _("pairing refused (HTTP {status}): {message}").format(
        status=status, message=message or _("unexpected answer"))


def _pair_with_code(args: argparse.Namespace) -> int:
    """Exchange the one-time code shown in the association's console for this station's
    device token, written mode 0600 to the state directory (or --token-file); then the
    person's contacts and the association's on-call number are downloaded for the modem,
    replacing any earlier copy. The token is never printed."""
    import httpx

    cfg: StationConfig | None = None
    if args.config:
        cfg = load_config(args.config, need_token=False)
    server = args.server or (cfg.server.url if cfg else "")
    token_path = Path(args.token_file) if args.token_file else (cfg.token_path if cfg else None)
    if not server or token_path is None:
        return _fail(_("pairing with a code needs --config station.toml (or --server URL and --token-file PATH)"))
    headers = {"User-Agent": f"balise-station/{__version__}", "Accept": "application/json"}
    url = server.rstrip("/") + "/api/v1/pair"
    for attempt in range(4):  # a busy server answers 503: the code is still good, try again
        try:
            r = httpx.post(url, json={"code": args.code}, timeout=10.0, headers=headers)
        except httpx.HTTPError as exc:
            print("balise-station: " + _("cannot reach {server}: {error}").format(
                server=server, error=type(exc).__name__), file=sys.stderr)
            return EXIT_DEGRADED
        if r.status_code != 503 or attempt == 3:
            break
        time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 5.0))
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("token"), str) \
            or not body["token"] or any(c.isspace() for c in body["token"]):
        print("balise-station: " + _pair_refusal(r.status_code, body), file=sys.stderr)
        return EXIT_DEGRADED
    token = body["token"]
    try:
        _write_secret(token_path, token + "\n")
    except OSError as exc:
        return _fail(_("cannot write {path}: {error}").format(path=token_path, error=exc.strerror))
    kind = {"station": _("station"), "phone": _("phone")}.get(body.get("kind", ""), _("device"))
    print(_("paired as {kind} {device}; token written to {path} (mode 600)").format(
        kind=kind, device=body.get("device", ""), path=token_path))
    if cfg is None:
        print(_("set server.token_file to it; a running station takes it within a few seconds"))
        return EXIT_OK
    if cfg.server.token and cfg.server.token_file is None:
        print(_("warning: {config} sets server.token itself: remove it so that the new token is used")
              .format(config=args.config), file=sys.stderr)
    return _download_contacts(cfg, server, token, headers)


def _download_contacts(cfg: StationConfig, server: str, token: str, headers: dict[str, str]) -> int:
    """The modem's copy of the contacts and the on-call number, replacing the old one; the
    alerts the old token could not deliver go again (once: the server keeps their client id)."""
    import httpx

    from balise_station.outbox import Outbox

    outbox = Outbox(cfg.db_path)
    try:
        outbox.clear_contacts()
        retried = outbox.retry_refused()
        if retried:
            print(_("{n} alert(s) the server refused before will be sent again").format(n=retried))
        try:
            r = httpx.get(server.rstrip("/") + "/api/v1/contacts", timeout=10.0,
                          headers={**headers, "Authorization": f"Bearer {token}"})
            body = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("contacts"), list):
            print("balise-station: " + _("contacts not downloaded (the station fetches them when it starts)"),
                  file=sys.stderr)
            return EXIT_DEGRADED
        outbox.save_contacts(body)
    finally:
        outbox.close()
    on_call = _("yes") if (body.get("association") or {}).get("on_call_number") else _("NONE")
    print(_("contacts downloaded for the modem: {n}; association's on-call number: {on_call}").format(
        n=len(body["contacts"]), on_call=on_call))
    return EXIT_OK


def cmd_pair(args: argparse.Namespace) -> int:
    if args.code:
        return _pair_with_code(args)
    if not args.config:
        return _fail(_("give a pairing code, or --config to scan for buttons"))
    if args.address:  # kept for old guides: the same as `buttons add --address`
        return _add_button(args.config, args.name, args.address, args.kind)
    args.seconds = args.scan_seconds
    return cmd_buttons_add(args)


# Test seam: the bleak backends (scanner, client) used by `buttons add`; None is the real radio.
BLE_BACKENDS: dict[str, type | None] = {"scanner": None, "client": None}


def _add_button(config: str, name: str, address: str, kind: str, bonded: str = "") -> int:
    from balise_station.config_edit import add_button

    add_button(config, name, address, kind)  # ConfigError: one line, exit 2
    bonding = {"bonded": _("bonded"), "not supported": _("not supported")}.get(bonded, bonded)
    if bonded.startswith("failed: "):
        bonding = _("failed: {error}").format(error=bonded.removeprefix("failed: "))
    print((_("button '{name}' ({kind}, {address}) added to {config}; bonding: {bonding}; restart the station")
           if bonded else _("button '{name}' ({kind}, {address}) added to {config}; restart the station"))
          .format(name=name, kind=kind, address=address.upper(), config=config, bonding=bonding))
    return EXIT_OK


def cmd_buttons_add(args: argparse.Namespace) -> int:
    """Scans, lists the buttons nearby with their signal strength, then listens to them all:
    the button the volunteer presses is the one added (and bonded where it supports it)."""
    from balise_station.config import valid_address
    from balise_station.config_edit import name_taken, not_an_address

    cfg = load_config(args.config, need_token=False)
    if args.address:
        if not valid_address(args.address):
            return _fail(not_an_address(args.address))
        return _add_button(args.config, args.name, args.address, args.kind or "led-button")
    from bleak.exc import BleakError

    from balise_station.buttons import bond, choose_by_press, scan_for_buttons

    known = {b.address.upper() for b in cfg.buttons}
    if any(b.name == args.name for b in cfg.buttons):
        return _fail(name_taken(args.name))
    print(_("scanning for {seconds} s: press the button once to wake it up...").format(seconds=number(args.seconds)),
          file=sys.stderr)

    def listening(buttons: list[Any]) -> None:
        print(_("now PRESS the button to add (listening for {seconds} s to {n} button(s))...").format(
            seconds=number(args.seconds), n=len(buttons)), file=sys.stderr, flush=True)

    async def go() -> tuple[Any, list[Any], list[str], str]:
        found = await scan_for_buttons(args.seconds, scanner_backend=BLE_BACKENDS["scanner"],
                                       adapter=cfg.bluetooth.adapter)
        found = [b for b in found if b.address.upper() not in known]
        for b in found:
            print(f"{b.address}  {b.kind:<10}  {b.rssi:>4} dBm  {b.name}", flush=True)
        if not found:
            return None, found, [], ""
        chosen, unreachable = await choose_by_press(found, args.seconds, BLE_BACKENDS["client"],
                                                    cfg.bluetooth.adapter, on_listening=listening)
        bonded = ""
        if chosen is not None and not args.no_bond:
            bonded = await bond(chosen.address, BLE_BACKENDS["client"], cfg.bluetooth.adapter)
        return chosen, found, unreachable, bonded

    try:
        chosen, found, unreachable, bonded = asyncio.run(go())
    except (BleakError, OSError) as exc:
        print("balise-station: " + _("Bluetooth is not available: {error}").format(error=exc), file=sys.stderr)
        return EXIT_DEGRADED
    if not found:
        print(_("no new button found nearby (is it awake? press it, then try again)"), file=sys.stderr)
        return EXIT_DEGRADED
    if chosen is None:
        print(_("no button was pressed: nothing added ({n} button(s) could not be listened to)").format(
            n=len(unreachable)) if unreachable else _("no button was pressed: nothing added"), file=sys.stderr)
        return EXIT_DEGRADED
    print(_("pressed: {address} ({kind}, {rssi} dBm)").format(address=chosen.address, kind=chosen.kind,
                                                              rssi=chosen.rssi))
    return _add_button(args.config, args.name, chosen.address, chosen.kind, bonded)


# -- install, selftest ---------------------------------------------------------------------------
def cmd_install(args: argparse.Namespace) -> int:
    """Writes the systemd unit (its own user, groups bluetooth, dialout, audio), a configuration
    if there is none, the state directory; as root into "/", creates the user and enables it."""
    from urllib.parse import urlsplit

    from balise_station.kit import apply_plan, install_plan

    parts = urlsplit(args.server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return _fail(_("--server must be an http(s) URL (got '{value}')").format(value=args.server))
    prefix = Path(args.prefix).resolve()
    plan = install_plan(prefix, args.server.rstrip("/"), user=args.user)
    system = prefix == Path("/")
    if args.dry_run:
        for d, mode in plan.dirs:
            print(_("would create {path} (mode {mode:o})").format(path=d, mode=mode))
        for path, content, _mode in plan.files:
            print(_("would write {path}:").format(path=path))
            print("".join(f"    {line}\n" for line in content.splitlines()), end="")
        for cmd in plan.commands:
            print(_("would run: {command}").format(command=" ".join(cmd)))
        return EXIT_OK
    if system and os.geteuid() != 0:
        return _fail(_("installing into / needs root (sudo), or use --prefix DIR / --dry-run"))
    try:
        rc = apply_plan(plan, run_commands=system, out=print)
    except OSError as exc:
        return _fail(_("cannot install: {error}").format(error=exc))
    if rc == 0:
        print(_("next: balise-station pair CODE --config /etc/balise/station.toml, then "
                "balise-station buttons add --config /etc/balise/station.toml, then sudo systemctl start balise-station")
              if system else _("installed under {prefix}; the commands above are for root on the station")
              .format(prefix=prefix))
    return EXIT_DEGRADED if rc else EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    """Siren at low volume, 2 s recorded, modem AT probe, server and token, a test alert,
    each button in range: one green (OK) or red (FAIL) line per part; exit 1 if any failed."""
    from balise_station import kit

    try:
        cfg = load_config(args.config)
    except NoTokenError:
        cfg = load_config(args.config, need_token=False)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    checks: list[Any] = []

    def show(new: list[Any]) -> None:
        for c in new:
            print(kit.render(c, colour), flush=True)
        checks.extend(new)

    with contextlib.ExitStack() as stack:
        port = None
        if cfg.modem.enabled and cfg.modem.simulated:
            from balise_station.sim.modem import SimulatedModem

            port = stack.enter_context(SimulatedModem()).port
        show([asyncio.run(kit.check_siren(cfg))])
        show([kit.check_microphone(cfg, args.record_seconds)])
        show([kit.check_modem(cfg, port)])
    show(asyncio.run(kit.check_server_and_alert(cfg)))
    show(asyncio.run(kit.check_buttons(cfg, BLE_BACKENDS["scanner"], args.scan_seconds)))
    failed = [c for c in checks if not c.ok]
    ok = len(checks) - len(failed)
    print(_("selftest: {ok} part(s) ok, {failed} FAILING").format(ok=ok, failed=len(failed)) if failed
          else _("selftest: {ok} part(s) ok").format(ok=ok))
    return EXIT_DEGRADED if failed else EXIT_OK


# -- simulate -----------------------------------------------------------------------------
def _load_trace(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_("cannot read trace {path}: {error}").format(path=path, error=exc.strerror)) from None
    return parse_trace(text, Path(path).name)


def _print_gesture(g: DecodedGesture, cid: str | None, t0: float) -> None:
    what = _("alert {id}").format(id=cid) if cid else (_("siren stopped") if g.gesture.value == "single" else "")
    print(f"{(g.at - t0) * 1000:8.0f} ms  {g.gesture.value:<7} {what}", flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    mode = ButtonMode.PRESS_ONLY if args.press_only else ButtonMode.EDGES
    trace = _load_trace(args.trace) if args.trace else None
    if trace is not None:
        if args.press_only:
            trace.mode = ButtonMode.PRESS_ONLY
        mode = trace.mode
    if args.config is None:
        return _simulate_decoder(trace, mode)
    from balise_station.sim.keyboard import LAG
    from balise_station.station import Station

    cfg = load_config(args.config)
    _setup_logging(cfg.log_level if not args.quiet else "WARNING")
    lag = 0.0 if trace else LAG
    with contextlib.ExitStack() as stack:
        station = Station(cfg, modem_factory=_modem_factory(cfg, stack), simulated_buttons={"button": mode},
                          test_mode=args.test or None, clock=lambda: time.monotonic() - lag)
        station.supervisors = []  # the simulated button replaces the configured ones
        t0 = time.monotonic()
        station.on_gesture = lambda g, cid: _print_gesture(g, cid, t0)
        feeder = _play_trace(trace, args.linger) if trace else _keyboard
        asyncio.run(_run_station(station, feeder))
    return EXIT_OK


def _simulate_decoder(trace: Any, mode: ButtonMode) -> int:
    """No configuration: decode only, print the gestures (and a trace's expectations)."""
    if trace is None:
        return _keyboard_decoder(mode)
    from balise_station.gestures import decode_trace

    got = decode_trace(trace.edges, trace.mode, trace.timing)
    for g in got:
        print(f"{g.at * 1000:8.0f} ms  {g.gesture.value:<7} " + _("button {name}").format(name=g.button))
    if trace.expected:
        ok = [(round(g.at * 1000), g.gesture, g.button) for g in got] == [
            (round(t * 1000), g, b) for t, g, b in trace.expected]
        print(_("as expected") if ok else _("NOT as expected"))
        return EXIT_OK if ok else EXIT_DEGRADED
    return EXIT_OK


def _play_trace(trace: Any, linger: float) -> Any:
    async def feed(station: Any) -> None:
        start = time.monotonic()
        base = station.clock()
        for t, edge, _button in trace.edges:
            await asyncio.sleep(max(0.0, start + t - time.monotonic()))
            # the trace's own times: a late wake-up must not turn a double press into two
            station.button_edge("button", edge, base + t)
        while station.router.next_deadline() is not None:
            await asyncio.sleep(0.05)
        end = time.monotonic() + linger
        while time.monotonic() < end:  # let alerts reach the server (or the modem), and a recording go on
            await asyncio.sleep(0.1)
            counts = station.outbox.counts()
            if not station.recordings.active() and counts["alerts_pending"] == counts["fixes_pending"] == 0 \
                    and counts["evidence_pending"] == 0:
                break
        station.stop()
    return feed


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


async def _keys(on_edge: Any, poll: Any, stop: asyncio.Event) -> None:
    from balise_station.sim.keyboard import KeyInterpreter

    ki = KeyInterpreter()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        data = os.read(sys.stdin.fileno(), 64)
        if not data or b"q" in data or b"\x04" in data:
            stop.set()
            return
        for _ in data:
            for t, e in ki.key(time.monotonic()):
                on_edge(e, t)

    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        while not stop.is_set():
            for t, e in ki.poll(time.monotonic()):
                on_edge(e, t)
            poll()
            await asyncio.sleep(0.01)
    finally:
        loop.remove_reader(sys.stdin.fileno())


def _key_help() -> str:
    return _("space (or any key) is the button: tap once, tap twice, or hold it for a long press; q quits")


def _no_terminal() -> str:
    return _("the keyboard button needs a terminal; use --trace FILE for scripted traces")


async def _keyboard(station: Any) -> None:
    if not sys.stdin.isatty():
        raise UsageError(_no_terminal())
    print(_key_help(), file=sys.stderr)
    with _raw_terminal():
        await _keys(lambda e, t: station.button_edge("button", e, t), lambda: None, station._stopping)


def _keyboard_decoder(mode: ButtonMode) -> int:
    if not sys.stdin.isatty():
        return _fail(_no_terminal())
    from balise_station.sim.keyboard import LAG

    dec = GestureDecoder(mode, button="button")
    t0 = time.monotonic()

    def show(gs: list[DecodedGesture]) -> None:
        for g in gs:
            print(f"{(g.at - t0) * 1000:8.0f} ms  {g.gesture.value}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        print(_key_help(), file=sys.stderr)
        with _raw_terminal():
            await _keys(lambda e, t: show(dec.feed(e, t)), lambda: show(dec.poll(time.monotonic() - LAG)), stop)

    asyncio.run(main())
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="balise-station", description=_("Balise home station: buttons, alerts, SMS fallback, siren."))
    p.add_argument("--version", action="version", version=f"balise-station {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help=_("run the station"))
    run.add_argument("--config", "-c", required=True, help=_("station.toml"))
    run.add_argument("--test", action="store_true", help=_("practice mode: every gesture raises a test alert"))
    run.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help=_("show the running station's state (exit 1 when degraded)"))
    st.add_argument("--config", "-c", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    en = sub.add_parser("enrol", help=_("register the evidence key with the server and pin its keys (also done at start)"))
    en.add_argument("--config", "-c", required=True)
    en.set_defaults(func=cmd_enrol)

    pair = sub.add_parser("pair", help=_("pair the station with the code from the console; or scan for buttons, "
                                        "or add one to the configuration"))
    pair.add_argument("code", nargs="?", help=_("one-time pairing code shown in the association's console"))
    pair.add_argument("--server", help=_("server address, with a pairing code (default: server.url of --config)"))
    pair.add_argument("--token-file", help=_("where to write the device token (default: the state directory)"))
    pair.add_argument("--config", "-c")
    pair.add_argument("--scan-seconds", type=float, default=10.0)
    pair.add_argument("--address", help=_("add this button to the configuration file (see buttons add)"))
    pair.add_argument("--kind", choices=sorted(BUTTON_KINDS), default="led-button")
    pair.add_argument("--name", default="button")
    pair.add_argument("--no-bond", action="store_true", help=argparse.SUPPRESS)
    pair.set_defaults(func=cmd_pair)

    buttons = sub.add_parser("buttons", help=_("the station's Bluetooth buttons"))
    bsub = buttons.add_subparsers(dest="buttons_command", required=True, parser_class=_Parser)
    add = bsub.add_parser("add", help=_("scan, then add the button that is pressed (bonded where it supports it)"))
    add.add_argument("--config", "-c", required=True)
    add.add_argument("--name", default="button", help=_("a name for it (any text)"))
    add.add_argument("--seconds", type=float, default=10.0, help=_("scan, then listen, this long each"))
    add.add_argument("--address", help=_("add this address without scanning"))
    add.add_argument("--kind", choices=sorted(BUTTON_KINDS), help=_("with --address (default led-button)"))
    add.add_argument("--no-bond", action="store_true", help=_("do not bond (pair at the Bluetooth level)"))
    add.set_defaults(func=cmd_buttons_add)

    ins = sub.add_parser("install", help=_("install as a systemd service running as its own user"))
    ins.add_argument("--server", required=True, help=_("the association's Balise server (https://...)"))
    ins.add_argument("--prefix", default="/", help=_("install under this directory instead of / (for packaging, tests)"))
    ins.add_argument("--user", default="balise", help=_("the service's own user (default balise)"))
    ins.add_argument("--dry-run", action="store_true", help=_("print what would be written and run; change nothing"))
    ins.set_defaults(func=cmd_install)

    stt = sub.add_parser("selftest", help=_("siren, microphone, modem, server, token, test alert, buttons: "
                                          "one line per part (stop the service first)"))
    stt.add_argument("--config", "-c", required=True)
    stt.add_argument("--record-seconds", type=float, default=2.0)
    stt.add_argument("--scan-seconds", type=float, default=10.0)
    stt.set_defaults(func=cmd_selftest)

    sim = sub.add_parser("simulate", help=_("a button in the terminal (keyboard) or a scripted trace"))
    sim.add_argument("--config", "-c", help=_("run the whole station with it; without, only decode gestures"))
    sim.add_argument("--trace", help=_("play this trace file instead of the keyboard"))
    sim.add_argument("--press-only", action="store_true", help=_("behave like an iTag (press-only tag)"))
    sim.add_argument("--test", action="store_true", help=_("every gesture raises a test alert"))
    sim.add_argument("--linger", type=float, default=15.0, help=_("seconds to wait for delivery after a trace"))
    sim.add_argument("--quiet", "-q", action="store_true", help=_("warnings only in the log"))
    sim.set_defaults(func=cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    activate_for(sys.argv[1:] if argv is None else argv)
    # argparse's own words (usage, errors, "options") through the station's catalogue
    argparse._ = _  # type: ignore[attr-defined]
    argparse.ngettext = ngettext  # type: ignore[attr-defined]
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (UsageError, ConfigError, TraceError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

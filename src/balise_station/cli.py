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
from balise_station.config import BUTTON_KINDS, ConfigError, StationConfig, load_config
from balise_station.gestures import ButtonMode, DecodedGesture, Edge, GestureDecoder, TraceError, parse_trace

EXIT_OK, EXIT_DEGRADED, EXIT_USAGE = 0, 1, 2


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
        return _fail("no [[buttons]] in the configuration: add one with 'balise-station pair' "
                     "or try 'balise-station simulate'")
    with contextlib.ExitStack() as stack:
        station = Station(cfg, modem_factory=_modem_factory(cfg, stack), test_mode=args.test or None)
        asyncio.run(_run_station(station))
    return EXIT_OK


# -- status ---------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        status = json.loads(cfg.status_path.read_text())
    except FileNotFoundError:
        print("station: never started (no status file in the state directory)")
        return EXIT_DEGRADED
    except (OSError, json.JSONDecodeError) as exc:
        return _fail(f"cannot read {cfg.status_path}: {exc}")
    if cfg.db_path.exists():
        from balise_station.outbox import Outbox

        ob = Outbox(cfg.db_path)
        status["queue"] = ob.counts()
        ob.close()
    age = time.time() - status.get("updated_ts", 0)
    running = age < 30 and _pid_alive(status.get("pid"))
    status["running"] = running
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(_status_text(status, age))
    healthy = (running and status["buttons"] and all(b["connected"] for b in status["buttons"])
               and not status.get("token_refused") and not status.get("queue", {}).get("alerts_refused"))
    return EXIT_OK if healthy else EXIT_DEGRADED


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
        return "never"
    s = int(time.time() - ts)
    return f"{s} s ago" if s < 120 else (f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago")


def _status_text(st: dict[str, Any], age: float) -> str:
    lines = [f"station {st.get('version')}: " + ("running" if st["running"] else f"NOT RUNNING (last seen {int(age)} s ago)")
             + (" (test mode)" if st.get("test_mode") else "")]
    for b in st.get("buttons", []):
        batt = f", battery {b['battery_percent']}%" if b.get("battery_percent") is not None else ""
        state = "connected" if b["connected"] else "DISCONNECTED"
        lines.append(f"button {b['name']} ({b.get('kind')}): {state}{batt}")
    if not st.get("buttons"):
        lines.append("no button configured")
    reach = st.get("server_reachable")
    lines.append("server: " + ("reachable" if reach else "unknown" if reach is None else "UNREACHABLE")
                 + (", REFUSES THIS STATION'S TOKEN (pair the station again)" if st.get("token_refused") else "")
                 + f", last success {_ago(st.get('last_server_success_ts'))}")
    q = st.get("queue", {})
    if q.get("alerts_refused"):
        lines.append(f"ALERTS NOT ACCEPTED BY THE SERVER: {q['alerts_refused']} (kept, tried again; the modem "
                     "texts the contacts when there is one)")
    lines.append(f"queue: {q.get('alerts_pending', 0)} alert(s) waiting, {q.get('alerts_open', 0)} open, "
                 f"{q.get('fixes_pending', 0)} fix(es), {q.get('dropped', 0)} refused by the server")
    ev = st.get("evidence") or {}
    recording = ev.get("recording_alerts") or []
    if ev.get("enabled", True):
        lines.append(
            f"evidence: microphone {ev.get('microphone', '?')}"
            + ("" if ev.get("available", True) else " UNAVAILABLE")
            + ("" if ev.get("enrolled", True) else " (NOT ENROLLED" + (f": {ev['error']}" if ev.get("error") else "") + ")")
            + (f"; RECORDING ({len(recording)})" if recording else "")
            + f"; {q.get('evidence_pending', 0)} record(s) waiting for upload"
            + (f", {q['evidence_rejected']} REFUSED by the server (kept)" if q.get("evidence_rejected") else ""))
    else:
        lines.append("evidence: recording disabled")
    contacts = st.get("contacts")
    lines.append(f"contacts: {contacts if contacts is not None else 'none yet'} (refreshed "
                 f"{_ago(st.get('contacts_fetched_ts'))})")
    lines.append(f"modem: {'configured' if st.get('modem') else 'none'}; "
                 f"location: {', '.join(st.get('location_sources') or []) or 'none'}")
    if st.get("siren_playing"):
        lines.append("siren: PLAYING")
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
        return _fail(f"evidence device key {cfg.device_key_path} unusable: {exc}")
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
    print(f"device key: {key.fingerprint}")
    if not result.done:
        print(f"not enrolled: {result.error}")
        return EXIT_DEGRADED
    print(f"server seal key (pinned): {result.keys.seal_fingerprint}")
    print(f"server signing key (pinned): {result.keys.signing_fingerprint}")
    return EXIT_OK


# -- pair -------------------------------------------------------------------------------
def _pair_with_code(args: argparse.Namespace) -> int:
    """Exchange the one-time code shown in the association's console for this station's
    device token, written to --token-file (mode 600). The token is never printed."""
    import httpx

    if not args.server or not args.token_file:
        return _fail("pairing with a code needs --server URL and --token-file PATH")
    url = args.server.rstrip("/") + "/api/v1/pair"
    for attempt in range(4):  # a busy server answers 503: the code is still good, try again
        try:
            r = httpx.post(url, json={"code": args.code}, timeout=10.0,
                           headers={"User-Agent": f"balise-station/{__version__}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            print(f"balise-station: cannot reach {args.server}: {type(exc).__name__}", file=sys.stderr)
            return EXIT_DEGRADED
        if r.status_code != 503 or attempt == 3:
            break
        time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 5.0))
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code != 200 or not isinstance(body, dict) or not body.get("token"):
        message = body.get("message") if isinstance(body, dict) else ""
        print(f"balise-station: pairing refused ({r.status_code}): {message or 'unexpected answer'}", file=sys.stderr)
        return EXIT_DEGRADED
    path = Path(args.token_file)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body["token"] + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror}")
    print(f"paired as {body.get('kind', 'device')} {body.get('device', '')}; token written to {path} "
          "(set server.token_file to it, then restart the station)")
    return EXIT_OK


def cmd_pair(args: argparse.Namespace) -> int:
    if args.code:
        return _pair_with_code(args)
    if not args.config:
        return _fail("give a pairing code, or --config to scan for buttons")
    cfg = load_config(args.config)
    if args.address:
        if any(b.address.lower() == args.address.lower() for b in cfg.buttons):
            return _fail(f"{args.address} is already in {args.config}")
        if any(b.name == args.name for b in cfg.buttons):
            return _fail(f"a button is already named {args.name!r}: choose another --name")
        block = f'\n[[buttons]]\nname = "{args.name}"\naddress = "{args.address}"\nkind = "{args.kind}"\n'
        with open(args.config, "a", encoding="utf-8") as f:
            f.write(block)
        load_config(args.config)  # still valid
        print(f"button {args.name} ({args.kind}, {args.address}) added to {args.config}; restart the station")
        return EXIT_OK
    from bleak.exc import BleakError

    from balise_station.buttons import scan_for_buttons

    print(f"scanning for {args.scan_seconds:g} s: press the button to wake it up...", file=sys.stderr)
    try:
        found = asyncio.run(scan_for_buttons(args.scan_seconds, adapter=cfg.bluetooth.adapter))
    except (BleakError, OSError) as exc:
        return _fail(f"Bluetooth is not available: {exc}")
    if not found:
        print("no button found")
        return EXIT_DEGRADED
    for b in found:
        print(f"{b.address}  {b.kind:<10}  {b.rssi:>4} dBm  {b.name}")
    print(f"add one with: balise-station pair --config {args.config} --address ADDRESS --kind KIND --name NAME")
    return EXIT_OK


# -- simulate -----------------------------------------------------------------------------
def _load_trace(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror}") from None
    return parse_trace(text, Path(path).name)


def _print_gesture(g: DecodedGesture, cid: str | None, t0: float) -> None:
    what = f"alert {cid}" if cid else ("siren stopped" if g.gesture.value == "single" else "")
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
        print(f"{g.at * 1000:8.0f} ms  {g.gesture.value:<7} button {g.button}")
    if trace.expected:
        ok = [(round(g.at * 1000), g.gesture, g.button) for g in got] == [
            (round(t * 1000), g, b) for t, g, b in trace.expected]
        print("as expected" if ok else "NOT as expected")
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


KEY_HELP = "space (or any key) is the button: tap once, tap twice, or hold it for a long press; q quits"


async def _keyboard(station: Any) -> None:
    if not sys.stdin.isatty():
        raise UsageError("the keyboard button needs a terminal; use --trace FILE for scripted traces")
    print(KEY_HELP, file=sys.stderr)
    with _raw_terminal():
        await _keys(lambda e, t: station.button_edge("button", e, t), lambda: None, station._stopping)


def _keyboard_decoder(mode: ButtonMode) -> int:
    if not sys.stdin.isatty():
        return _fail("the keyboard button needs a terminal; use --trace FILE for scripted traces")
    from balise_station.sim.keyboard import LAG

    dec = GestureDecoder(mode, button="button")
    t0 = time.monotonic()

    def show(gs: list[DecodedGesture]) -> None:
        for g in gs:
            print(f"{(g.at - t0) * 1000:8.0f} ms  {g.gesture.value}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        print(KEY_HELP, file=sys.stderr)
        with _raw_terminal():
            await _keys(lambda e, t: show(dec.feed(e, t)), lambda: show(dec.poll(time.monotonic() - LAG)), stop)

    asyncio.run(main())
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="balise-station", description="Balise home station: buttons, alerts, SMS fallback, siren.")
    p.add_argument("--version", action="version", version=f"balise-station {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the station")
    run.add_argument("--config", "-c", required=True, help="station.toml")
    run.add_argument("--test", action="store_true", help="practice mode: every gesture raises a test alert")
    run.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="show the running station's state (exit 1 when degraded)")
    st.add_argument("--config", "-c", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    en = sub.add_parser("enrol", help="register the evidence key with the server and pin its keys (also done at start)")
    en.add_argument("--config", "-c", required=True)
    en.set_defaults(func=cmd_enrol)

    pair = sub.add_parser("pair", help="pair the station with the code from the console; or scan for buttons, "
                                        "or add one to the configuration")
    pair.add_argument("code", nargs="?", help="one-time pairing code shown in the association's console")
    pair.add_argument("--server", help="server address, with a pairing code")
    pair.add_argument("--token-file", help="where to write the device token, with a pairing code")
    pair.add_argument("--config", "-c")
    pair.add_argument("--scan-seconds", type=float, default=10.0)
    pair.add_argument("--address", help="add this button to the configuration file")
    pair.add_argument("--kind", choices=sorted(BUTTON_KINDS), default="led-button")
    pair.add_argument("--name", default="button")
    pair.set_defaults(func=cmd_pair)

    sim = sub.add_parser("simulate", help="a button in the terminal (keyboard) or a scripted trace")
    sim.add_argument("--config", "-c", help="run the whole station with it; without, only decode gestures")
    sim.add_argument("--trace", help="play this trace file instead of the keyboard")
    sim.add_argument("--press-only", action="store_true", help="behave like an iTag (press-only tag)")
    sim.add_argument("--test", action="store_true", help="every gesture raises a test alert")
    sim.add_argument("--linger", type=float, default=15.0, help="seconds to wait for delivery after a trace")
    sim.add_argument("--quiet", "-q", action="store_true", help="warnings only in the log")
    sim.set_defaults(func=cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (UsageError, ConfigError, TraceError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Installing the station as a service (``balise-station install``) and checking every part
of it on the real hardware (``balise-station selftest``)."""

from __future__ import annotations

import array
import asyncio
import math
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from balise_station.config import StationConfig
from balise_station.i18n import _, number

SERVICE = "balise-station"
USER = "balise"
GROUPS = ("bluetooth", "dialout", "audio")  # BlueZ over D-Bus, the modem's serial port, the speaker and mic
STATE_DIR = "/var/lib/balise-station"
CONFIG_DIR = "/etc/balise"

UNIT = """\
# Written by `balise-station install`: the Balise home station, as its own user.
[Unit]
Description=Balise home station (alert buttons, modem fallback, siren)
Documentation=https://github.com/balise/balise/blob/main/docs/station-install.md
After=network-online.target bluetooth.service
Wants=network-online.target bluetooth.service
# Not ordered after time-sync.target: offline, a board without a clock would never start.
# The station copes with a wrong clock (the server refuses times before 2020 and the alert
# goes again without them); fake-hwclock and systemd-timesyncd keep it right (see the guide).

[Service]
Type=simple
User={user}
Group={user}
SupplementaryGroups={groups}
ExecStart={execstart}
Restart=always
RestartSec=5
StateDirectory=balise-station
StateDirectoryMode=0700
UMask=0077
Environment=PYTHONUNBUFFERED=1
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadWritePaths={state_dir}
# serial ports (modem), sound cards and the Bluetooth D-Bus socket must stay visible
PrivateDevices=no

[Install]
WantedBy=multi-user.target
"""

CONFIG_TEMPLATE = """\
# The Balise home station (docs/station.md). Pair it: balise-station pair CODE --config {config}
[server]
url = "{server}"

[station]
state_dir = "{state_dir}"   # the token, the queue, the contacts' copy
language = "fr"   # of balise-station's messages: "fr" or "en"

[modem]
enabled = false
port = "/dev/ttyUSB2"

[evidence]
microphone = "auto"
"""


@dataclass(frozen=True)
class InstallPlan:
    files: list[tuple[Path, str, int]]  # path, content, mode
    dirs: list[tuple[Path, int]]
    commands: list[list[str]]  # run as root, in order, only when installing into "/"


def install_plan(prefix: Path, server: str, python: str = sys.executable, user: str = USER,
                 config_exists: Callable[[Path], bool] = Path.exists) -> InstallPlan:
    config = Path(CONFIG_DIR) / "station.toml"
    state = Path(STATE_DIR)
    execstart = " ".join(shlex.quote(a) for a in (python, "-m", "balise_station", "run", "--config", str(config)))
    unit = UNIT.format(user=user, groups=" ".join(GROUPS), execstart=execstart, state_dir=state)
    files = [(prefix / "etc/systemd/system" / f"{SERVICE}.service", unit, 0o644)]
    if not config_exists(prefix / config.relative_to("/")):
        files.append((prefix / config.relative_to("/"),
                      CONFIG_TEMPLATE.format(server=server, state_dir=state, config=config), 0o640))
    dirs = [(prefix / state.relative_to("/"), 0o700), (prefix / Path(CONFIG_DIR).relative_to("/"), 0o750)]
    commands = [
        ["groupadd", "--force", "--system", g] for g in GROUPS
    ] + [
        ["useradd", "--system", "--home-dir", str(state), "--no-create-home", "--shell", "/usr/sbin/nologin",
         "--user-group", "--groups", ",".join(GROUPS), user],
        ["chown", "-R", f"{user}:{user}", str(state)],
        ["chown", f"root:{user}", CONFIG_DIR, str(config)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", f"{SERVICE}.service"],
    ]
    return InstallPlan(files, dirs, commands)


def apply_plan(plan: InstallPlan, run_commands: bool, out: Callable[[str], None]) -> int:
    for d, mode in plan.dirs:
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)
        out(_("directory {path} (mode {mode:o})").format(path=d, mode=mode))
    for path, content, mode in plan.files:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(content, encoding="utf-8")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        out(_("wrote {path}").format(path=path))
    for cmd in plan.commands:
        if not run_commands:
            out(_("to run as root: {command}").format(command=" ".join(shlex.quote(c) for c in cmd)))
            continue
        if cmd[0] == "useradd" and _user_exists(cmd[-1]):
            cmd = ["usermod", "--append", "--groups", ",".join(GROUPS), cmd[-1]]
        out("$ " + " ".join(shlex.quote(c) for c in cmd))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            out(_("failed ({status}): {error}").format(
                status=r.returncode, error=r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""))
            return 1
    return 0


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# -- selftest ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    part: str  # already in the station's language, as ``detail``
    ok: bool
    detail: str


GREEN, RED, RESET = "\033[32m", "\033[31m", "\033[0m"


def render(check: Check, colour: bool) -> str:
    mark = _("[ OK ]") if check.ok else _("[FAIL]")
    line = mark + " " + _("{part}: {detail}").format(part=check.part, detail=check.detail)
    return f"{GREEN if check.ok else RED}{line}{RESET}" if colour else line


async def check_siren(cfg: StationConfig, seconds: float = 1.0, volume: float = 0.05) -> Check:
    """The siren at low volume for a second, on the configured output."""
    from balise_station.siren import PacedSink, make_sink, siren_waveform

    part = _("siren")
    if cfg.siren.output == "none":
        return Check(part, False, _('disabled (siren.output = "none")'))
    sink = make_sink(cfg.siren.output, cfg.siren.wav_path)
    if isinstance(sink, PacedSink) and cfg.siren.output == "auto":
        return Check(part, False, _("no sound player found (install alsa-utils for aplay)"))
    try:
        await sink.open()
        await sink.write(siren_waveform(seconds, volume))
        await asyncio.sleep(0.2)
    except OSError as exc:
        return Check(part, False, _failed(sink.name, exc))
    finally:
        await sink.close()
    return Check(part, True, _("played {seconds} s at {volume} % volume ({player})").format(
        seconds=number(seconds), volume=round(volume * 100), player=sink.name))


def _failed(tool: str, exc: Exception) -> str:
    return _("{tool} failed: {error}").format(tool=tool, error=exc)


def check_microphone(cfg: StationConfig, seconds: float = 2.0) -> Check:
    """Records ``seconds`` and says how loud the room was (all zeros: a muted or absent input)."""
    from balise_station.recording import RATE, choose_microphone

    part = _("microphone")
    if not cfg.evidence.enabled:
        return Check(part, True, _('disabled (evidence.microphone = "none")'))
    choice = choose_microphone(cfg.evidence)
    if choice.make is None:
        return Check(part, False, _("{tool}: no capture tool (install alsa-utils for arecord)").format(
            tool=choice.name.replace(" (not found)", "")))
    try:
        mic = choice.make()
    except (OSError, ValueError) as exc:
        return Check(part, False, _failed(choice.name, exc))
    try:
        pcm = mic.read(int(seconds * RATE))
    except OSError as exc:
        return Check(part, False, _failed(choice.name, exc))
    finally:
        close = getattr(mic, "close", None)
        if close is not None:
            close()
    if len(pcm) < seconds * RATE * 2 * 0.9:
        return Check(part, False, _("{tool}: only {got} s recorded of {seconds} s").format(
            tool=choice.name, got=number(len(pcm) / 2 / RATE, 1), seconds=number(seconds)))
    samples = array.array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    if rms == 0:
        return Check(part, False, _("{tool}: {seconds} s recorded, but only silence (muted input?)").format(
            tool=choice.name, seconds=number(seconds)))
    db = 20 * math.log10(rms / 32768)
    return Check(part, True, _("{seconds} s recorded with {tool}, level {db:.0f} dBFS").format(
        seconds=number(seconds), tool=choice.name, db=db))


def check_modem(cfg: StationConfig, port: str | None) -> Check:
    from balise_station.modem import probe

    if not cfg.modem.enabled:
        return Check(_("modem"), True, _("none configured (no SMS when the internet is down)"))
    state, why = probe(port or cfg.modem.port, cfg.modem.baudrate, min(cfg.modem.timeout_s, 3.0))
    return Check(_("modem"), state == "ok", _("answers AT") if state == "ok" else why)


async def check_server_and_alert(cfg: StationConfig) -> list[Check]:
    """The token (GET /contacts) and a test alert (reaches only the association, never the contacts)."""
    from balise_station.api import DeviceApi

    if not cfg.server.token:
        return [Check(_("token"), False, _("none: pair the station (balise-station pair CODE)"))]
    api = DeviceApi(cfg.server.url, cfg.server.token, cfg.server.timeout_s)
    try:
        contacts = await api.contacts()
        reachable = Check(_("server"), True, _("reachable"))
        if contacts.status in (401, 403, 410):
            return [reachable, Check(_("token"), False, _("refused ({error}): pair the station again").format(
                error=contacts.error))]
        if contacts.status is None or contacts.status >= 500:
            return [Check(_("server"), False, _("unreachable ({error})").format(error=contacts.error))]
        checks = [reachable, Check(_("token"), True, _("accepted"))]
        if contacts.ok and isinstance(contacts.body, dict):
            n = len(contacts.body.get("contacts") or [])
            on_call = bool((contacts.body.get("association") or {}).get("on_call_number"))
            checks.append(Check(_("contacts"), n > 0, _("{n} contact(s); association's on-call number: {on_call}")
                                .format(n=n, on_call=_("yes") if on_call else _("none"))))
        cid = str(uuid.uuid4())
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        r = await api.post_alert({"client_id": cid, "kind": "test", "gesture": "api", "triggered_at": now,
                                  "fixes": [], "sms_sent_by_device": False, "sms_sent_to_contacts": []})
        checks.append(Check(_("test alert"), r.ok, _("accepted by the server (a test: the association sees it, no contact is told)")
                            if r.ok else _("not accepted ({error})").format(error=r.error)))
        return checks
    finally:
        await api.aclose()


async def check_buttons(cfg: StationConfig, scanner_backend: type | None, seconds: float) -> list[Check]:
    """Each configured button seen by a Bluetooth scan (a running station holds the links:
    its status says whether they are connected)."""
    from bleak import BleakScanner
    from bleak.exc import BleakError

    if not cfg.buttons:
        return [Check(_("buttons"), False, _("none configured (balise-station buttons add)"))]
    out = []
    kw: dict[str, Any] = {}
    if scanner_backend is not None:
        kw["backend"] = scanner_backend
    if cfg.bluetooth.adapter:
        kw["bluez"] = {"adapter": cfg.bluetooth.adapter}
    for b in cfg.buttons:
        try:
            found = await BleakScanner.find_device_by_address(b.address, timeout=seconds, **kw)
        except (BleakError, OSError) as exc:
            out.append(Check(_("button {name}").format(name=b.name), False,
                             _("Bluetooth unavailable: {error}").format(error=exc)))
            continue
        out.append(Check(_("button {name}").format(name=b.name), found is not None,
                         _("{address} in range").format(address=b.address) if found else
                         _("{address} not seen (press it; if the station runs, it holds the link: see "
                           "balise-station status)").format(address=b.address)))
    return out

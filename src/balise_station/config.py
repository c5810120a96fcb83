"""The station's configuration file (TOML), read into typed, validated settings.

Every mistake becomes a ``ConfigError`` whose message is one line naming the
key at fault; the command line prints it and exits non-zero.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from balise_station.gestures import ButtonMode, Gesture, GestureTiming
from balise_station.i18n import LANGUAGES, _

TOKEN_ENV = "BALISE_DEVICE_TOKEN"
BUTTON_KINDS = {"led-button": ButtonMode.EDGES, "itag": ButtonMode.PRESS_ONLY}
LOCATION_SOURCES = ("fixed", "gpsd", "simulated")
SIREN_OUTPUTS = ("auto", "aplay", "paplay", "wav", "none")
MICROPHONES = ("auto", "arecord", "parecord", "generated", "wav", "none")
TOKEN_FILE_NAME = "device-token"  # in the state directory, written by `balise-station pair CODE`
# A Bluetooth address as BlueZ writes it: six pairs of hex digits separated by colons.
ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def default_state_dir(env: Any = None) -> Path:
    """Outside any source tree: $XDG_STATE_HOME/balise-station, else ~/.local/state/balise-station
    (the installed service sets station.state_dir = "/var/lib/balise-station")."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "balise-station"


def valid_address(address: str) -> bool:
    return bool(ADDRESS.match(address))


def unreadable(path: Path, exc: Exception) -> ConfigError:
    """The one line for a configuration file that cannot be read (missing, unreadable, not TOML)."""
    if isinstance(exc, FileNotFoundError):
        return ConfigError(_("configuration file not found: {path}").format(path=path))
    if isinstance(exc, (OSError, UnicodeDecodeError)):
        return ConfigError(_("cannot read configuration file {path}: {error}").format(path=path, error=exc))
    return ConfigError(_("{path} is not valid TOML: {error}").format(path=path, error=exc))


class ConfigError(ValueError):
    """A bad configuration: the message is one line for the person running the command."""


class NoTokenError(ConfigError):
    """Not paired yet: `status` and `selftest` go on without a token and say so."""


@dataclass(frozen=True)
class ServerConfig:
    url: str
    token: str = field(repr=False)
    timeout_s: float = 5.0
    token_file: Path | None = None  # where `pair CODE` writes the token
    check_interval_s: float = 5.0  # a reachability check this often: a lost server is noticed within
    check_timeout_s: float = 3.0   # check_interval_s + check_timeout_s


@dataclass(frozen=True)
class ButtonConfig:
    name: str
    address: str
    kind: str = "led-button"

    @property
    def mode(self) -> ButtonMode:
        return BUTTON_KINDS[self.kind]


@dataclass(frozen=True)
class FixedPlace:
    lat: float
    lon: float
    accuracy_m: float = 30.0


@dataclass(frozen=True)
class GpsdConfig:
    host: str = "127.0.0.1"
    port: int = 2947


@dataclass(frozen=True)
class SimulatedTrackConfig:
    lat: float = 48.8566
    lon: float = 2.3522
    radius_m: float = 150.0
    period_s: float = 600.0
    interval_s: float = 1.0
    accuracy_m: float = 8.0


@dataclass(frozen=True)
class LocationConfig:
    sources: tuple[str, ...] = ()
    fixed: FixedPlace | None = None
    gpsd: GpsdConfig = field(default_factory=GpsdConfig)
    simulated: SimulatedTrackConfig = field(default_factory=SimulatedTrackConfig)
    max_age_s: float = 120.0


@dataclass(frozen=True)
class ModemConfig:
    enabled: bool = False
    port: str = ""
    simulated: bool = False
    baudrate: int = 115200
    timeout_s: float = 10.0
    check_interval_s: float = 60.0  # an AT probe this often while running
    retry_s: float = 30.0  # a failed SMS fallback is tried again this long after


@dataclass(frozen=True)
class SirenConfig:
    output: str = "auto"
    wav_path: str = ""
    max_duration_s: float = 300.0
    volume: float = 1.0


@dataclass(frozen=True)
class AlertConfig:
    fallback_delay_s: float = 10.0
    fix_interval_s: float = 10.0
    track_for_s: float = 7200.0
    test_mode: bool = False
    test_gesture: Gesture | None = None
    open_check_interval_s: float = 30.0
    # after an alarm leaves the server's open list (resolved, cancelled, or cancelled under
    # duress: the station cannot tell), recording and fixes go on silently this long
    after_close_s: float = 600.0


@dataclass(frozen=True)
class EvidenceConfig:
    """Recording the room on an alarm (see docs/station.md, "Evidence recording")."""

    microphone: str = "auto"
    device: str = ""
    wav_path: Path | None = None
    simulated_speed: float = 1.0
    max_duration_s: float = 3600.0
    segment_seconds: int = 5
    upload_timeout_s: float = 20.0

    @property
    def enabled(self) -> bool:
        return self.microphone != "none"


@dataclass(frozen=True)
class BluetoothConfig:
    scan_timeout_s: float = 10.0
    backoff_max_s: float = 60.0
    battery_interval_s: float = 600.0
    adapter: str = ""


@dataclass(frozen=True)
class StationConfig:
    server: ServerConfig
    state_dir: Path
    heartbeat_interval_s: float = 300.0
    contacts_refresh_s: float = 3600.0
    log_level: str = "INFO"
    language: str = "fr"  # of what balise-station prints for a person (i18n.py)
    gestures: GestureTiming = field(default_factory=GestureTiming)
    buttons: tuple[ButtonConfig, ...] = ()
    bluetooth: BluetoothConfig = field(default_factory=BluetoothConfig)
    location: LocationConfig = field(default_factory=LocationConfig)
    modem: ModemConfig = field(default_factory=ModemConfig)
    siren: SirenConfig = field(default_factory=SirenConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    source: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.state_dir / "station.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def token_path(self) -> Path:
        return self.server.token_file or self.state_dir / TOKEN_FILE_NAME

    @property
    def device_key_path(self) -> Path:
        return self.state_dir / "evidence-device-key.pem"


# -- reading ----------------------------------------------------------------
class _Table:
    """A TOML table read with its dotted path, so errors can name the key."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(_("[{key}] must be a table").format(key=path))
        self.data = dict(data)
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def table(self, key: str) -> _Table:
        return _Table(self.data.pop(key, {}), self._name(key))

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.data.pop(key, default)
        if value is None:
            raise ConfigError(_("{key} is required").format(key=self._name(key)))
        if not isinstance(value, str):
            raise ConfigError(_("{key} must be a string").format(key=self._name(key)))
        if choices and value not in choices:
            raise ConfigError(_("{key} must be one of {choices} (got '{value}')").format(
                key=self._name(key), choices=", ".join(choices), value=value))
        return value

    def number(self, key: str, default: float | None = None, low: float | None = None,
               high: float | None = None) -> float:
        value = self.data.pop(key, default)
        if value is None:
            raise ConfigError(_("{key} is required").format(key=self._name(key)))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(_("{key} must be a number").format(key=self._name(key)))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(_("{key} must be between {low} and {high} (got {value})").format(
                key=self._name(key), low=low, high=high, value=value))
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.number(key, default, low, high)
        if value != int(value):
            raise ConfigError(_("{key} must be a whole number").format(key=self._name(key)))
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.pop(key, default)
        if not isinstance(value, bool):
            raise ConfigError(_("{key} must be true or false").format(key=self._name(key)))
        return value

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise ConfigError(_("unknown setting {key}").format(key=self._name(key)))


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None,
                need_token: bool = True) -> StationConfig:
    """Reads and validates the configuration file at ``path``."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise unreadable(p, exc) from None
    return parse_config(raw, base_dir=p.parent, env=os.environ if env is None else env, source=p,
                        need_token=need_token)


def parse_config(raw: dict[str, Any], base_dir: Path = Path("."), env: Any = None,
                 source: Path | None = None, need_token: bool = True) -> StationConfig:
    env = {} if env is None else env
    root = _Table(raw, "")
    st = root.table("station")
    state = st.string("state_dir", "")
    state_dir = Path(state).expanduser() if state else default_state_dir(env)
    if not state_dir.is_absolute():
        state_dir = base_dir / state_dir
    server = _server(root.table("server"), base_dir, env, state_dir, need_token)

    heartbeat = st.number("heartbeat_interval_s", 300, 5, 86400)
    contacts_refresh = st.number("contacts_refresh_s", 3600, 10, 7 * 86400)
    log_level = st.string("log_level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
    language = st.string("language", "fr", LANGUAGES)
    st.done()

    g = root.table("gestures")
    try:
        timing = GestureTiming(
            double_window=g.number("double_window_ms", 450, 100, 2000) / 1000,
            long_threshold=g.number("long_threshold_ms", 1200, 300, 10000) / 1000,
            debounce=g.number("debounce_ms", 40, 1, 200) / 1000,
        )
    except ValueError as exc:
        raise ConfigError(_("gestures: {error}").format(error=exc)) from None
    g.done()

    buttons = _buttons(root.data.pop("buttons", []))

    bt = root.table("bluetooth")
    bluetooth = BluetoothConfig(
        scan_timeout_s=bt.number("scan_timeout_s", 10, 1, 300),
        backoff_max_s=bt.number("backoff_max_s", 60, 1, 3600),
        battery_interval_s=bt.number("battery_interval_s", 600, 10, 86400),
        adapter=bt.string("adapter", ""),
    )
    bt.done()

    location = _location(root.table("location"))
    modem = _modem(root.table("modem"))

    sn = root.table("siren")
    siren = SirenConfig(
        output=sn.string("output", "auto", SIREN_OUTPUTS),
        wav_path=sn.string("wav_path", ""),
        max_duration_s=sn.number("max_duration_s", 300, 1, 3600),
        volume=sn.number("volume", 1.0, 0.0, 1.0),
    )
    sn.done()
    if siren.output == "wav" and not siren.wav_path:
        raise ConfigError(_('siren.wav_path is required when siren.output is "wav"'))

    al = root.table("alerts")
    test_gesture = al.string("test_gesture", "none", ("none", "single", "double", "long", "triple"))
    alerts = AlertConfig(
        fallback_delay_s=al.number("fallback_delay_s", 10, 0, 600),
        fix_interval_s=al.number("fix_interval_s", 10, 1, 3600),
        track_for_s=al.number("track_for_s", 7200, 60, 7 * 86400),
        test_mode=al.boolean("test_mode", False),
        test_gesture=None if test_gesture == "none" else Gesture(test_gesture),
        open_check_interval_s=al.number("open_check_interval_s", 30, 1, 3600),
        after_close_s=al.number("after_close_s", 600, 0, 7200),
    )
    al.done()
    evidence = _evidence(root.table("evidence"), base_dir)
    root.done()
    return StationConfig(
        server=server, state_dir=state_dir, heartbeat_interval_s=heartbeat,
        contacts_refresh_s=contacts_refresh, log_level=log_level, language=language, gestures=timing,
        buttons=buttons, bluetooth=bluetooth, location=location, modem=modem, siren=siren,
        alerts=alerts, evidence=evidence, source=source,
    )


def _server(t: _Table, base_dir: Path, env: Any, state_dir: Path, need_token: bool = True) -> ServerConfig:
    url = t.string("url").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(_("server.url must be an http(s) URL (got '{value}')").format(value=url))
    token = t.string("token", "")
    token_file = t.string("token_file", "")
    timeout = t.number("timeout_s", 5, 0.5, 60)
    check_interval = t.number("check_interval_s", 5, 1, 3600)
    check_timeout = t.number("check_timeout_s", 3, 0.5, 60)
    t.done()
    if token and token_file:
        raise ConfigError(_("server.token and server.token_file are exclusive: keep one"))
    tf: Path | None = None
    if token_file:
        tf = Path(token_file).expanduser()
        if not tf.is_absolute():
            tf = base_dir / tf
    elif not token and not env.get(TOKEN_ENV, "").strip():
        tf = state_dir / TOKEN_FILE_NAME  # written by `balise-station pair CODE`
    if tf is not None and not token:
        try:
            token = tf.read_text(encoding="utf-8").strip()
        except OSError as exc:
            if token_file and need_token:
                raise ConfigError(_("cannot read server.token_file {path}: {error}").format(
                    path=tf, error=exc.strerror)) from None
    token = token or env.get(TOKEN_ENV, "").strip()
    if not token and need_token:
        raise NoTokenError(_("no device token: pair the station (balise-station pair CODE), or set "
                             "server.token_file, server.token or {variable}").format(variable=TOKEN_ENV))
    if any(c.isspace() for c in token):
        raise ConfigError(_("the device token must not contain spaces"))
    return ServerConfig(url=url, token=token, timeout_s=timeout, token_file=tf,
                        check_interval_s=check_interval, check_timeout_s=check_timeout)


def _buttons(raw: Any) -> tuple[ButtonConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(_("buttons must be an array of tables ([[buttons]])"))
    out: list[ButtonConfig] = []
    for i, item in enumerate(raw):
        t = _Table(item, f"buttons[{i}]")
        b = ButtonConfig(
            name=t.string("name", f"button{i + 1}"),
            address=t.string("address"),
            kind=t.string("kind", "led-button", tuple(BUTTON_KINDS)),
        )
        t.done()
        if not valid_address(b.address):
            raise ConfigError(_("buttons[{i}].address must be a Bluetooth address like AA:BB:CC:DD:EE:FF "
                                "(got '{value}')").format(i=i, value=b.address))
        if any(o.name == b.name for o in out):
            raise ConfigError(_("buttons[{i}].name '{name}' is used twice").format(i=i, name=b.name))
        out.append(b)
    return tuple(out)


def _location(t: _Table) -> LocationConfig:
    sources = t.data.pop("sources", None)
    max_age = t.number("max_age_s", 120, 1, 86400)
    fixed = None
    if t.has("fixed"):
        f = t.table("fixed")
        fixed = FixedPlace(
            lat=f.number("lat", None, -90, 90),
            lon=f.number("lon", None, -180, 180),
            accuracy_m=f.number("accuracy_m", 30, 0, 100000),
        )
        f.done()
    gp = t.table("gpsd")
    gpsd = GpsdConfig(host=gp.string("host", "127.0.0.1"), port=gp.integer("port", 2947, 1, 65535))
    gp.done()
    sm = t.table("simulated")
    simulated = SimulatedTrackConfig(
        lat=sm.number("lat", 48.8566, -90, 90),
        lon=sm.number("lon", 2.3522, -180, 180),
        radius_m=sm.number("radius_m", 150, 0, 100000),
        period_s=sm.number("period_s", 600, 1, 86400),
        interval_s=sm.number("interval_s", 1, 0.05, 3600),
        accuracy_m=sm.number("accuracy_m", 8, 0, 10000),
    )
    sm.done()
    t.done()
    if sources is None:
        sources = ["fixed"] if fixed else []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ConfigError(_("location.sources must be a list of names"))
    for s in sources:
        if s not in LOCATION_SOURCES:
            raise ConfigError(_("location.sources: unknown source '{value}' (use {choices})").format(
                value=s, choices=", ".join(LOCATION_SOURCES)))
    if "fixed" in sources and fixed is None:
        raise ConfigError(_('location.sources names "fixed" but [location.fixed] is missing'))
    return LocationConfig(tuple(sources), fixed, gpsd, simulated, max_age)


def _modem(t: _Table) -> ModemConfig:
    m = ModemConfig(
        enabled=t.boolean("enabled", False),
        port=t.string("port", ""),
        simulated=t.boolean("simulated", False),
        baudrate=t.integer("baudrate", 115200, 1200, 4000000),
        timeout_s=t.number("timeout_s", 10, 1, 120),
        check_interval_s=t.number("check_interval_s", 60, 5, 86400),
        retry_s=t.number("retry_s", 30, 1, 3600),
    )
    t.done()
    if m.enabled and not (m.port or m.simulated):
        raise ConfigError(_("modem.port is required when the modem is enabled (or set modem.simulated = true)"))
    return m


def _evidence(t: _Table, base_dir: Path) -> EvidenceConfig:
    microphone = t.string("microphone", "auto", MICROPHONES)
    wav = t.string("wav_path", "")
    e = EvidenceConfig(
        microphone=microphone,
        device=t.string("device", ""),
        wav_path=(base_dir / wav) if wav else None,
        simulated_speed=t.number("simulated_speed", 1.0, 0.1, 100),
        max_duration_s=t.number("max_duration_s", 3600, 10, 86400),
        segment_seconds=t.integer("segment_seconds", 5, 1, 10),
        upload_timeout_s=t.number("upload_timeout_s", 20, 1, 300),
    )
    t.done()
    if microphone == "wav":
        if e.wav_path is None:
            raise ConfigError(_('evidence.wav_path is required when evidence.microphone is "wav"'))
        if not e.wav_path.is_file():
            raise ConfigError(_("evidence.wav_path: no such file {path}").format(path=e.wav_path))
    return e

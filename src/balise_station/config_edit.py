"""Changes to the station's configuration file made by commands (``buttons add``, ``pair``).

Written with a TOML library (tomlkit keeps the volunteer's comments and layout), never by
hand-built strings; the new file is validated by ``load_config`` before it replaces the old
one, atomically, so a failed change leaves the station's configuration as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from balise_station.config import BUTTON_KINDS, ConfigError, StationConfig, load_config, valid_address


def _read(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    except TOMLKitError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _write_checked(path: Path, doc: tomlkit.TOMLDocument) -> StationConfig:
    tmp = path.with_name(f".{path.name}.new")
    text = tomlkit.dumps(doc)
    old = path.stat()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, old.st_mode & 0o777)
    try:  # root editing /etc/balise/station.toml (root:balise 0640): the service must still read it
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        pass
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        cfg = load_config(tmp, need_token=False)  # still a valid configuration
    except ConfigError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return cfg


def add_button(path: str | os.PathLike[str], name: str, address: str, kind: str) -> StationConfig:
    """Appends a ``[[buttons]]`` table; refuses a bad address or kind, a known address or name."""
    p = Path(path)
    if not valid_address(address):
        raise ConfigError(f"not a Bluetooth address: {address!r} (expected six pairs like AA:BB:CC:DD:EE:FF)")
    if kind not in BUTTON_KINDS:
        raise ConfigError(f"unknown button kind {kind!r} (use {', '.join(sorted(BUTTON_KINDS))})")
    if not name.strip():
        raise ConfigError("the button's name must not be empty")
    cfg = load_config(p, need_token=False)
    if any(b.address.lower() == address.lower() for b in cfg.buttons):
        raise ConfigError(f"{address} is already in {p}")
    if any(b.name == name for b in cfg.buttons):
        raise ConfigError(f"a button is already named {name!r}: choose another --name")
    doc = _read(p)
    buttons = doc.get("buttons")
    if buttons is None:
        buttons = tomlkit.aot()
        doc.append("buttons", buttons)
    table = tomlkit.table()
    table.add("name", name)
    table.add("address", address.upper())
    table.add("kind", kind)
    buttons.append(table)
    return _write_checked(p, doc)

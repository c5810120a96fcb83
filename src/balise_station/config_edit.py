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

from balise_station.config import BUTTON_KINDS, ConfigError, StationConfig, load_config, unreadable, valid_address
from balise_station.i18n import _


def not_an_address(address: str) -> str:
    return _("not a Bluetooth address: '{value}' (expected six pairs like AA:BB:CC:DD:EE:FF)").format(value=address)


def name_taken(name: str) -> str:
    return _("a button is already named '{name}': choose another --name").format(name=name)


def _read(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
        raise unreadable(path, exc) from None


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
        raise ConfigError(not_an_address(address))
    if kind not in BUTTON_KINDS:
        raise ConfigError(_("unknown button kind '{value}' (use {choices})").format(
            value=kind, choices=", ".join(sorted(BUTTON_KINDS))))
    if not name.strip():
        raise ConfigError(_("the button's name must not be empty"))
    cfg = load_config(p, need_token=False)
    if any(b.address.lower() == address.lower() for b in cfg.buttons):
        raise ConfigError(_("{address} is already in {path}").format(address=address, path=p))
    if any(b.name == name for b in cfg.buttons):
        raise ConfigError(name_taken(name))
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

"""The language of what ``balise-station`` prints for a person: French first, English complete.

The station's own catalogue (``locale/{fr,en}/LC_MESSAGES/balise_station.po``, compiled to
``.mo`` and shipped in the package) read with the standard library's gettext: the station has
no Django. The language is ``[station] language`` of the configuration ("fr", the default, or
"en"); ``BALISE_STATION_LANGUAGE`` in the environment overrides it for one command. ``LANG``
is not followed on purpose: Raspberry Pi OS ships en_GB and ssh passes on the laptop's
locale, which would turn a French station English without anyone asking.
"""

from __future__ import annotations

import gettext as _gettext
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path

DOMAIN = "balise_station"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("fr", "en")
DEFAULT = "fr"
ENV = "BALISE_STATION_LANGUAGE"

_current: _gettext.NullTranslations = _gettext.NullTranslations()
_language = ""


def activate(language: str) -> None:
    """Every later _() in this language; an unknown one is French."""
    global _current, _language
    if language not in LANGUAGES:
        language = DEFAULT
    _current = _gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)
    _language = language


def language() -> str:
    return _language


def _(message: str) -> str:
    if not _language:
        activate(DEFAULT)
    return _current.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    if not _language:
        activate(DEFAULT)
    return _current.ngettext(singular, plural, n)


def number(value: float, digits: int | None = None) -> str:
    """VALUE as a person reads it in the current language: 0,5 in French, 0.5 in English
    (DIGITS after the separator, or as few as needed)."""
    if not _language:
        activate(DEFAULT)
    text = f"{value:.{digits}f}" if digits is not None else f"{value:g}"
    return text.replace(".", ",") if _language == "fr" else text


def configured_language(config: str | os.PathLike[str] | None) -> str:
    """``[station] language`` of the file, read before (and whether or not) the rest of it is
    valid, so that its errors are already in its language; "" when it says none."""
    if not config:
        return ""
    try:
        with open(config, "rb") as f:
            station = tomllib.load(f).get("station")
    except (OSError, ValueError):
        return ""
    value = station.get("language") if isinstance(station, dict) else None
    return value if isinstance(value, str) else ""


def config_argument(argv: Sequence[str]) -> str | None:
    """The --config (-c) of a command line, before argparse reads it (its help and errors are
    printed in the language too)."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def activate_for(argv: Sequence[str]) -> str:
    """The environment's choice, else the configuration's, else French; returns it."""
    chosen = os.environ.get(ENV, "").strip().lower() or configured_language(config_argument(argv)) or DEFAULT
    activate(chosen)
    return _language


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it here."""
    return message


# argparse's own words that a volunteer meets (cli.main hands argparse this module's _()):
# listed here so that xgettext puts them in the catalogue.
ARGPARSE = (
    N_("usage: "), N_("options"), N_("positional arguments"), N_("show this help message and exit"),
    N_("show program's version number and exit"), N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"), N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"), N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"), N_("ambiguous option: %(option)s could match %(matches)s"),
)

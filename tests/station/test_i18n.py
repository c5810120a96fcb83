"""French first, English complete: what `balise-station` prints for a volunteer is French on a
station that chose nothing, English when its configuration says so; the catalogue holds every
string of the source, each translated, and nothing stale."""

from __future__ import annotations

import ast
import gettext
import glob
import importlib.util
import json
import re
import shutil
import string
import subprocess
import tomllib
from pathlib import Path

import pytest

from balise_station import cli, i18n
from balise_station.cli import main
from fake_ble import FakePeripheral, make_backends
from station_fakes import TOKEN, FakeDeviceApi

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "balise_station"
LOCALE = SOURCE / "locale"

# the server's reader of .po files (tests/i18n/test_catalogs.py), not a second one
_spec = importlib.util.spec_from_file_location("server_catalogs", ROOT / "tests" / "i18n" / "test_catalogs.py")
_catalogs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_catalogs)
po_entries = _catalogs.po_entries


def po(language: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / "balise_station.po"


# -- the catalogue ------------------------------------------------------------------------
def test_every_string_has_a_french_translation_and_english_is_complete():
    french = po_entries(po("fr"))
    assert len(french) > 150
    assert [msgid for msgid, msgstr, fuzzy in french if not msgstr or fuzzy] == []
    english = po_entries(po("en"))
    assert {m for m, _, _ in english} == {m for m, _, _ in french}
    assert [msgid for msgid, msgstr, fuzzy in english if msgstr != msgid or fuzzy] == []


def _fields(text: str) -> list[str]:
    braces = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    return sorted(braces + re.findall(r"%(?:\(\w+\))?[srd]", text))


def test_a_translation_keeps_the_placeholders_of_its_source():
    """A missing or misspelt {name} would be a KeyError at the moment a volunteer needs the line."""
    wrong = [(msgid, msgstr) for msgid, msgstr, _ in po_entries(po("fr")) if _fields(msgid) != _fields(msgstr)]
    assert wrong == []


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_compiled_catalogue_matches_its_source(language):
    with open(po(language).with_suffix(".mo"), "rb") as f:
        compiled = gettext.GNUTranslations(f)
    stale = [msgid for msgid, msgstr, _ in po_entries(po(language)) if compiled.gettext(msgid) != msgstr]
    assert stale == []


def test_the_catalogue_holds_every_string_of_the_source_and_nothing_stale(tmp_path):
    """What xgettext extracts today (as scripts/station-messages does) is exactly the shipped catalogue."""
    if shutil.which("xgettext") is None:
        raise AssertionError("xgettext is missing: install Debian's gettext package (scripts/test does)")
    files = sorted(str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*.py"))
    pot = tmp_path / "station.pot"
    subprocess.run(["xgettext", "--language=Python", "--from-code=UTF-8", "--keyword=_", "--keyword=N_",
                    "--keyword=ngettext:1,2", "--no-location", "-o", str(pot), *files],
                   cwd=SOURCE, check=True, capture_output=True, timeout=60)
    extracted = {msgid for msgid, _, _ in po_entries(pot)}
    shipped = {msgid for msgid, _, _ in po_entries(po("fr"))}
    assert sorted(extracted - shipped) == [], "not in the catalogue: run scripts/station-messages, translate"
    assert sorted(shipped - extracted) == [], "stale: run scripts/station-messages"


def test_no_translated_string_hides_in_an_f_string():
    """xgettext does not look inside f-strings: a _() there never reaches the catalogue."""
    hidden = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                hidden += [f"{path.relative_to(SOURCE)}:{call.lineno}" for call in ast.walk(node)
                           if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                           and call.func.id in ("_", "N_", "ngettext")]
    assert hidden == []


def test_the_catalogues_are_package_data():
    """`pip install` ships them: the package-data globs of pyproject.toml, expanded as setuptools
    expands them (recursive glob from the package's directory), take both languages."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {Path(f) for g in data.get("balise_station", []) + data.get("*", [])
               for f in glob.glob(str(SOURCE / g), recursive=True)}
    for language in ("fr", "en"):
        assert {po(language), po(language).with_suffix(".mo")} <= shipped


# -- the language ---------------------------------------------------------------------------
def station_toml(tmp_path: Path, url: str, station: str = "", rest: str = "", token: str = f'token = "{TOKEN}"') -> Path:
    p = tmp_path / "station.toml"
    p.write_text(f'[server]\nurl = "{url}"\n{token}\ntimeout_s = 1\n'
                 f'[station]\nstate_dir = "state"\n{station}\n[evidence]\nmicrophone = "none"\n{rest}')
    return p


def test_the_environment_overrides_the_configuration(tmp_path, monkeypatch, capsys):
    cfg = station_toml(tmp_path, "http://127.0.0.1:9", 'language = "en"\nlog_level = "LOUD"')
    monkeypatch.delenv(i18n.ENV)
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == ("balise-station: station.log_level must be one of DEBUG, INFO, WARNING, "
                                       "ERROR (got 'LOUD')\n")
    monkeypatch.setenv(i18n.ENV, "fr")
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == ("balise-station: station.log_level doit être l'un de DEBUG, INFO, WARNING, "
                                       "ERROR (reçu 'LOUD')\n")


def test_an_unknown_language_is_refused_in_french(tmp_path, french, capsys):
    cfg = station_toml(tmp_path, "http://127.0.0.1:9", 'language = "de"')
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == "balise-station: station.language doit être l'un de fr, en (reçu 'de')\n"


def test_argparse_speaks_french_too(french, capsys):
    assert main(["status"]) == 2
    assert capsys.readouterr().err == "balise-station: les arguments suivants sont obligatoires : --config/-c\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("utilisation : balise-station") and "afficher cette aide et quitter" in out


# -- status ----------------------------------------------------------------------------------
def degraded(tmp_path: Path, device_api: FakeDeviceApi, station: str = "") -> Path:
    """Never started, no button, a token the server refuses, a modem port that does not exist."""
    (tmp_path / "token").write_text("revoked-token")
    return station_toml(tmp_path, device_api.url, station,
                        f'[modem]\nenabled = true\nport = "{tmp_path / "ttyUSB7"}"\n', token='token_file = "token"')


def test_status_is_french_by_default_failures_included(tmp_path, device_api: FakeDeviceApi, french, capsys):
    cfg = degraded(tmp_path, device_api)
    assert main(["status", "--config", str(cfg)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines.pop(5).startswith(f"modem : INUTILISABLE (impossible d'ouvrir {tmp_path / 'ttyUSB7'} : ")
    assert lines == [
        "station : JAMAIS DÉMARRÉE (pas de fichier d'état dans le répertoire d'état)",
        "boutons : AUCUN (en ajouter un avec 'balise-station buttons add')",
        "jeton : REFUSÉ par le serveur (appairer la station de nouveau)",
        "serveur : joignable, REFUSE LE JETON DE CETTE STATION (appairer la station de nouveau) ; "
        "dernier succès de la station : jamais",
        "file d'attente : 0 alerte(s) en attente, 0 ouverte(s), 0 position(s), 0 refusée(s) par le serveur",
        "micro : désactivé",
        "contacts : AUCUN ENCORE (le modem ne peut pas aider) (mis à jour : jamais) ; localisation : aucun",
    ]
    device_api.stop()
    assert main(["status", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "jeton : non vérifié (serveur injoignable)" in out
    assert "serveur : INJOIGNABLE (ConnectError) ; dernier succès de la station : jamais" in out


def test_status_is_english_when_configured(tmp_path, device_api: FakeDeviceApi, monkeypatch, capsys):
    monkeypatch.delenv(i18n.ENV)
    cfg = degraded(tmp_path, device_api, 'language = "en"')
    assert main(["status", "--config", str(cfg)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "station: NEVER STARTED (no status file in the state directory)"
    assert lines[2] == "token: REFUSED by the server (pair the station again)"
    assert lines[5].startswith(f"modem: UNUSABLE (cannot open {tmp_path / 'ttyUSB7'}: ")
    assert i18n.language() == "en"


def test_status_json_is_the_same_in_every_language(tmp_path, device_api: FakeDeviceApi, monkeypatch, capsys):
    """The machine-readable mode and the exit code do not follow the language (the modem's
    reason, a sentence for the volunteer, does)."""
    cfg = degraded(tmp_path, device_api)
    outputs = {}
    for language in ("fr", "en"):
        monkeypatch.setenv(i18n.ENV, language)
        assert main(["status", "--config", str(cfg), "--json"]) == 1
        status = json.loads(capsys.readouterr().out)
        status["checks"].pop("modem_error")
        outputs[language] = status
    assert outputs["fr"] == outputs["en"]
    assert outputs["fr"]["checks"] == {"server": "reachable", "token": "refused", "modem": "unusable",
                                       "microphone": "disabled"}


# -- selftest ---------------------------------------------------------------------------------
def selftest_config(tmp_path: Path, device_api: FakeDeviceApi, monkeypatch, station: str = "") -> Path:
    world = {"AA:00:00:00:00:01": FakePeripheral("AA:00:00:00:00:01")}
    monkeypatch.setitem(cli.BLE_BACKENDS, "scanner", make_backends(world)[0])
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[server]\nurl = "{device_api.url}"\ntoken = "{TOKEN}"\n[station]\nstate_dir = "state"\n{station}\n'
                   f'[siren]\noutput = "wav"\nwav_path = "{tmp_path / "selftest.wav"}"\n'
                   '[modem]\nenabled = true\nsimulated = true\n[evidence]\nmicrophone = "generated"\n'
                   '[[buttons]]\nname = "pendentif"\naddress = "AA:00:00:00:00:01"\n'
                   '[[buttons]]\nname = "clés"\naddress = "AA:00:00:00:00:02"\nkind = "itag"\n')
    return cfg


def test_selftest_on_the_simulated_hardware_in_french(tmp_path, device_api: FakeDeviceApi, french, monkeypatch,
                                                      capsys):
    cfg = selftest_config(tmp_path, device_api, monkeypatch)
    assert main(["selftest", "--config", str(cfg), "--scan-seconds", "0.3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[ OK ] sirène : jouée 1 s à 5 % du volume (wav)"
    assert re.fullmatch(r"\[ OK \] micro : 2 s enregistrées avec generated, niveau -\d+ dBFS", lines[1])
    assert lines[2:6] == ["[ OK ] modem : répond à AT", "[ OK ] serveur : joignable", "[ OK ] jeton : accepté",
                          "[ OK ] contacts : 3 contact(s) ; numéro d'astreinte de l'association : oui"]
    [alert] = device_api.alerts.values()
    assert alert["kind"] == "test"  # (its number on the server is no business of hers)
    assert lines[6] == "[ OK ] alerte d'essai : acceptée par le serveur (un essai : l'association la voit, aucun contact n'est prévenu)"
    assert lines[7] == "[ OK ] bouton pendentif : AA:00:00:00:00:01 à portée"
    assert lines[8] == ("[ÉCHEC] bouton clés : AA:00:00:00:00:02 non vu (l'appuyer ; si la station est en marche, "
                        "elle tient la liaison : voir balise-station status)")
    assert lines[9] == "autotest : 8 élément(s) ok, 1 EN ÉCHEC"


def test_selftest_is_english_when_configured(tmp_path, device_api: FakeDeviceApi, monkeypatch, capsys):
    monkeypatch.delenv(i18n.ENV)
    cfg = selftest_config(tmp_path, device_api, monkeypatch, 'language = "en"')
    assert main(["selftest", "--config", str(cfg), "--scan-seconds", "0.3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[ OK ] siren: played 1 s at 5 % volume (wav)"
    assert lines[8].startswith("[FAIL] button clés: AA:00:00:00:00:02 not seen")
    assert lines[9] == "selftest: 8 part(s) ok, 1 FAILING"


# -- pair, buttons add --------------------------------------------------------------------------
def test_pairing_with_an_expired_or_used_code_is_one_french_line(tmp_path, device_api: FakeDeviceApi, french,
                                                                 capsys):
    cfg = station_toml(tmp_path, device_api.url, token="")
    device_api.pair_codes["OLD-000"] = "expired"
    assert main(["pair", "OLD-000", "--config", str(cfg)]) == 1
    assert capsys.readouterr() == ("", "balise-station: appairage refusé : ce code a expiré "
                                       "(en demander un nouveau dans la console)\n")
    device_api.pair_codes["ONE-111"] = "t1"
    assert main(["pair", "ONE-111", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"appairée comme station station-1 ; jeton écrit dans {tmp_path / 'state' / 'device-token'} (mode 600)" in out
    assert "contacts téléchargés pour le modem : 3 ; numéro d'astreinte de l'association : oui" in out
    assert main(["pair", "ONE-111", "--config", str(cfg)]) == 1
    assert capsys.readouterr() == ("", "balise-station: appairage refusé : code inconnu ou déjà utilisé "
                                       "(en demander un nouveau dans la console)\n")


def test_pairing_refused_in_english_when_configured(tmp_path, device_api: FakeDeviceApi, monkeypatch, capsys):
    monkeypatch.delenv(i18n.ENV)
    cfg = station_toml(tmp_path, device_api.url, 'language = "en"', token="")
    assert main(["pair", "NOPE-00", "--config", str(cfg)]) == 1
    assert capsys.readouterr().err == ("balise-station: pairing refused: unknown or already used code "
                                       "(ask the console for a new one)\n")


def test_a_bad_button_address_is_one_french_line(tmp_path, french, capsys):
    cfg = station_toml(tmp_path, "http://127.0.0.1:9")
    before = cfg.read_text()
    assert main(["buttons", "add", "--config", str(cfg), "--address", "AA-BB-CC-DD-EE-FF"]) == 2
    assert capsys.readouterr().err == ("balise-station: pas une adresse Bluetooth : 'AA-BB-CC-DD-EE-FF' "
                                       "(attendu six paires comme AA:BB:CC:DD:EE:FF)\n")
    assert main(["buttons", "add", "--config", str(cfg), "--address", "AA:BB:CC:DD:EE:01", "--kind", "bell"]) == 2
    assert capsys.readouterr().err == ("balise-station: argument --kind : choix invalide : 'bell' "
                                       "(choisir parmi 'itag', 'led-button')\n")
    assert cfg.read_text() == before


def test_a_bad_button_address_in_english_when_configured(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(i18n.ENV)
    cfg = station_toml(tmp_path, "http://127.0.0.1:9", 'language = "en"')
    assert main(["buttons", "add", "-c", str(cfg), "--address", "hello"]) == 2
    assert capsys.readouterr().err == ("balise-station: not a Bluetooth address: 'hello' "
                                       "(expected six pairs like AA:BB:CC:DD:EE:FF)\n")


def test_numbers_read_with_the_language_s_decimal_separator():
    try:
        i18n.activate("fr")
        assert (i18n.number(0.5), i18n.number(2.0), i18n.number(1.25, 1)) == ("0,5", "2", "1,2")
        i18n.activate("en")
        assert (i18n.number(0.5), i18n.number(2.0)) == ("0.5", "2")
    finally:
        i18n.activate(i18n.DEFAULT)

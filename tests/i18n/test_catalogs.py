"""French first: every string marked for translation has a French translation, and the
compiled catalogue shipped with the package matches its source."""

import ast
import gettext
import re
from pathlib import Path

LOCALE = Path(__file__).resolve().parents[2] / "src" / "balise" / "locale"


def po_entries(path: Path) -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) for every entry but the header; for a plural entry, msgstr
    is its plural forms joined, empty if any form is missing."""
    entries, fuzzy, current, field = [], False, {"msgid": "", "msgstr": ""}, None

    def flush():
        msgstr = current["msgstr"]
        if "msgid_plural" in current:
            forms = [current.get(f"msgstr[{i}]", "") for i in (0, 1)]
            msgstr = "|".join(forms) if all(forms) else ""
        if current["msgid"] or msgstr:
            entries.append((current["msgid"], msgstr, fuzzy))

    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            flush()
            current, fuzzy, field = {"msgid": "", "msgstr": ""}, False, None
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        else:
            match = re.match(r'^(msgid|msgstr|msgid_plural|msgstr\[\d\])\s+(".*")$', line)
            if match:
                field = match.group(1)
                current[field] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and field:
                current[field] = current.get(field, "") + ast.literal_eval(line)
    return [e for e in entries if e[0]]


def test_every_string_has_a_french_translation():
    entries = po_entries(LOCALE / "fr" / "LC_MESSAGES" / "django.po")
    assert len(entries) > 100
    untranslated = [msgid for msgid, msgstr, fuzzy in entries if not msgstr or fuzzy]
    assert untranslated == []


def test_compiled_french_catalogue_matches_its_source():
    with open(LOCALE / "fr" / "LC_MESSAGES" / "django.mo", "rb") as f:
        compiled = gettext.GNUTranslations(f)
    stale = [msgid for msgid, msgstr, _ in po_entries(LOCALE / "fr" / "LC_MESSAGES" / "django.po")
             if "|" not in msgstr and compiled.gettext(msgid) != msgstr]
    assert stale == []


def test_french_is_the_default_language(settings):
    assert settings.LANGUAGE_CODE == "fr"
    assert dict(settings.LANGUAGES).keys() == {"fr", "en"}


SOURCE = LOCALE.parent


def test_no_translated_string_hides_in_an_f_string():
    """xgettext does not look inside f-strings: a _() there never reaches the catalogue."""
    hidden = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                for call in ast.walk(node):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                            and call.func.id in ("_", "gettext", "gettext_lazy", "ngettext", "pgettext")):
                        hidden.append(f"{path.relative_to(SOURCE)}:{call.lineno}")
    assert hidden == []


def test_the_french_catalogue_holds_every_string_of_the_source(tmp_path):
    """What `makemessages` extracts today is all in the shipped catalogue."""
    import shutil
    import subprocess
    import sys

    if shutil.which("xgettext") is None:
        raise AssertionError("xgettext is missing: install Debian's gettext package (scripts/test does)")
    copy = tmp_path / "balise"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "fr", "--no-obsolete", "--no-location"],
        cwd=copy, check=True, capture_output=True, timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "balise.settings"},
    )
    extracted = {msgid for msgid, _, _ in po_entries(copy / "locale" / "fr" / "LC_MESSAGES" / "django.po")}
    shipped = {msgid for msgid, _, _ in po_entries(LOCALE / "fr" / "LC_MESSAGES" / "django.po")}
    assert sorted(extracted - shipped) == []

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

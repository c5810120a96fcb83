"""axe-core in the browser tests, in one place: the pages read by a contact or by her are
checked on a phone (390×844) in the light and the dark colour scheme, and any serious or
critical violation fails the test. The counts per impact are printed (pytest -s)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# axe-core 4.14.1 (MPL-2.0): package/axe.min.js and package/LICENSE of `npm pack axe-core@4.14.1`, unchanged.
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "locale": "fr-FR", "bypass_csp": True}  # bypass_csp: only to inject axe-core
IMPACTS = ("critical", "serious", "moderate", "minor")
BLOCKING = ("critical", "serious")
SCHEMES = ("light", "dark")


def _run(page) -> list[dict]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")["violations"]


def axe_violations(page, name: str) -> list[str]:
    """The serious and critical violations axe-core finds on PAGE as it stands, in the
    light then the dark scheme, one line each; prints NAME's count per impact. A page
    that stays light in the dark scheme fails here: its dark run would check nothing new."""
    found, backgrounds = [], set()
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        backgrounds.add(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        violations = _run(page)
        counts = Counter(v["impact"] for v in violations)
        print(f"axe {name} ({scheme}): " + ", ".join(f"{impact} {counts[impact]}" for impact in IMPACTS))
        for v in violations:
            if v["impact"] in BLOCKING:
                found.append(f"{name} ({scheme}) {v['id']} ({v['impact']}): {v['help']} — "
                             f"{[n['target'] for n in v['nodes']][:3]}")
                print("   ", found[-1])
    page.emulate_media(color_scheme="light")  # Playwright's default, for what the test does next
    assert len(backgrounds) == len(SCHEMES), f"{name}: the same background in every scheme {backgrounds}"
    return found


def focus_ring_contrast(page) -> float:
    """The contrast of the focused element's outline against the page's background: WCAG
    1.4.11 (AA) asks 3:1 of what shows where the keyboard is."""
    return page.evaluate("""() => {
      const lum = css => css.match(/[\\d.]+/g).slice(0, 3).map(v => v / 255)
        .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
        .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
      const [a, b] = [getComputedStyle(document.activeElement).outlineColor,
                      getComputedStyle(document.body).backgroundColor].map(lum).sort((x, y) => y - x);
      return (a + 0.05) / (b + 0.05);
    }""")

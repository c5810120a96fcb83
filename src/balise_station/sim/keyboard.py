"""The button's simulated twin in a terminal: a key is the button.

Terminals report key presses, not releases; holding a key makes the terminal
repeat it (after an initial delay of 250-660 ms, then every 30-50 ms). The
``KeyInterpreter`` turns the characters back into press and release edges:

* a character after silence is a press;
* characters closer than ``repeat_gap`` are the key held down (auto-repeat);
* a character after a longer gap is either the first auto-repeat or a new tap:
  it is a new tap unless another character follows within ``repeat_gap``;
* the key is released when no character came for ``release_gap`` (longer than
  the terminal's initial repeat delay), or for 1.5 ``repeat_gap`` once repeating.

Edges come out with their true times but up to ``repeat_gap`` late, so the
simulator runs the decoder ``LAG`` seconds behind the wall clock. Pure: times
in, edges out.
"""

from __future__ import annotations

from dataclasses import dataclass

from balise_station.gestures import Edge

LAG = 0.2  # how far behind real time the simulator's decoder runs
TAP_GAP = 0.06  # where a release is placed before a second tap (more than the debounce)


@dataclass
class KeyInterpreter:
    repeat_gap: float = 0.1
    release_gap: float = 0.7
    held: bool = False
    _last: float = 0.0
    _repeating: bool = False
    _candidate: float | None = None

    def key(self, t: float) -> list[tuple[float, Edge]]:
        out = self.poll(t)
        if not self.held:
            self.held, self._last, self._repeating = True, t, False
            out.append((t, Edge.PRESS))
        elif self._candidate is not None or t - self._last < self.repeat_gap:
            self._candidate = None  # auto-repeat: the key is held
            self._repeating = True
            self._last = t
        else:
            self._candidate = t
        return out

    def poll(self, now: float) -> list[tuple[float, Edge]]:
        out: list[tuple[float, Edge]] = []
        if self._candidate is not None and now >= self._candidate + self.repeat_gap:
            c, self._candidate = self._candidate, None  # no repeat followed: it was a new tap
            out += [(c - TAP_GAP, Edge.RELEASE), (c, Edge.PRESS)]
            self._last, self._repeating = c, False
        gap = self.repeat_gap * 1.5 if self._repeating else self.release_gap
        if self.held and self._candidate is None and now >= self._last + gap:
            self.held = False
            out.append((self._last + (self.repeat_gap if self._repeating else TAP_GAP), Edge.RELEASE))
        return out

    def next_deadline(self) -> float | None:
        if self._candidate is not None:
            return self._candidate + self.repeat_gap
        if self.held:
            return self._last + (self.repeat_gap * 1.5 if self._repeating else self.release_gap)
        return None

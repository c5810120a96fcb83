"""Gesture decoding: a pure state machine per button.

The decoder is fed button edges with their times (seconds on any monotonic
clock) and asked, through ``poll(now)``, for the gestures whose deadline has
passed. It never reads a clock, sleeps or does I/O, so the station and the
tests drive it with whatever clock they like.

Rules (edges mode, buttons that report press and release):

* a **press** that follows another press by less than the double-press window
  (measured press to press) continues the same burst; the second press of a
  burst is a **double**, emitted at once;
* a burst of one press, released before the long-press threshold, is a
  **single**, emitted when the double-press window has passed and the release
  is final (never earlier);
* any press held until the long-press threshold is a **long**, emitted at the
  threshold while the button is still held (a long on the first press of a
  burst replaces the single);
* presses beyond the second in a burst are absorbed (they can still become a
  long when held).

Rules (press-only mode, iTag-style tags that only notify presses):

* presses chain press to press within the window; one press is a **single**,
  two a **double**, both emitted when the window after the last press has
  passed; the third press is a **triple** (it stands in for long), emitted at
  once; more presses are absorbed.

Duplicates and bounces (``debounce``, 40 ms by default) are dropped: a press
while the button is already held or a release while it is already released
(a repeated notification); a press less than ``debounce`` after a release
(contact bounce: the release and the press are both dropped, the hold goes
on); in press-only mode, a press less than ``debounce`` after the previous
press. A release that comes quickly after its press is *kept*: a missed
release would otherwise turn a tap into a long press and sound the siren.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "ButtonMode",
    "DecodedGesture",
    "Edge",
    "Gesture",
    "GestureDecoder",
    "GestureRouter",
    "GestureTiming",
    "Trace",
    "TraceError",
    "decode_trace",
    "parse_trace",
]


class Edge(enum.Enum):
    PRESS = "press"
    RELEASE = "release"


class Gesture(enum.Enum):
    SINGLE = "single"
    DOUBLE = "double"
    LONG = "long"
    TRIPLE = "triple"


class ButtonMode(enum.Enum):
    EDGES = "edges"
    PRESS_ONLY = "press_only"


@dataclass(frozen=True)
class GestureTiming:
    """Timing of gestures, in seconds."""

    double_window: float = 0.45
    long_threshold: float = 1.2
    debounce: float = 0.04

    def __post_init__(self) -> None:
        if not 0 < self.debounce < self.double_window:
            raise ValueError("debounce must be positive and shorter than the double-press window")
        if self.long_threshold <= self.debounce:
            raise ValueError("the long-press threshold must be longer than the debounce")


@dataclass(frozen=True)
class DecodedGesture:
    gesture: Gesture
    at: float  # when the decision was due (decoder clock)
    first_press_at: float  # first press of the burst (or of the hold, for long)
    button: str = ""


@dataclass
class _Burst:
    count: int = 0
    first_at: float = 0.0
    last_press_at: float = 0.0
    decided: bool = False  # a gesture already went out for this burst


class GestureDecoder:
    """Decodes the edges of one button into gestures."""

    def __init__(
        self,
        mode: ButtonMode = ButtonMode.EDGES,
        timing: GestureTiming | None = None,
        button: str = "",
    ) -> None:
        self.mode = mode
        self.timing = timing or GestureTiming()
        self.button = button
        self._burst = _Burst()
        self._held = False
        self._hold_start = 0.0
        self._long_done = False
        self._released_at: float | None = None
        self._last_t = float("-inf")
        self.dropped = 0  # duplicates and bounces dropped so far

    # -- public API -------------------------------------------------------
    def feed(self, edge: Edge, t: float) -> list[DecodedGesture]:
        """Feeds one edge at time ``t``; returns the gestures decided up to ``t``."""
        t = max(t, self._last_t)  # a late timestamp never moves time backwards
        out = self.poll(t)
        self._last_t = t
        if self.mode is ButtonMode.PRESS_ONLY:
            if edge is Edge.PRESS:
                out += self._press_only(t)
            else:
                self.dropped += 1
        elif edge is Edge.PRESS:
            out += self._press(t)
        else:
            self._release(t)
        out += self.poll(t)
        return out

    def poll(self, now: float) -> list[DecodedGesture]:
        """Returns the gestures whose deadline is at or before ``now``."""
        out: list[DecodedGesture] = []
        while True:
            due = self._due(now)
            if due is None:
                break
            out.append(due)
        self._last_t = max(self._last_t, now)
        return out

    def next_deadline(self) -> float | None:
        """When ``poll`` should next be called, or None when idle."""
        candidates = [d for d in (self._long_deadline(), self._burst_deadline()) if d is not None]
        return min(candidates) if candidates else None

    @property
    def held(self) -> bool:
        return self._held

    def idle(self) -> bool:
        return self.next_deadline() is None and not self._held

    # -- edges mode -------------------------------------------------------
    def _press(self, t: float) -> list[DecodedGesture]:
        timing = self.timing
        if self._held:
            self.dropped += 1  # repeated notification
            return []
        if self._released_at is not None and t - self._released_at < timing.debounce:
            self.dropped += 2  # bounce: the release and this press never happened
            self._held = True
            self._released_at = None
            return []
        out: list[DecodedGesture] = []
        burst = self._burst
        if burst.count and t - burst.last_press_at < timing.double_window:
            burst.count += 1
            burst.last_press_at = t
            if burst.count == 2 and not burst.decided:
                burst.decided = True
                out.append(self._gesture(Gesture.DOUBLE, t, burst.first_at))
        else:
            self._burst = _Burst(count=1, first_at=t, last_press_at=t)
        self._held = True
        self._hold_start = t
        self._long_done = False
        self._released_at = None
        return out

    def _release(self, t: float) -> None:
        if not self._held:
            self.dropped += 1
            return
        self._held = False
        self._released_at = t

    def _long_deadline(self) -> float | None:
        if self.mode is ButtonMode.EDGES and self._held and not self._long_done:
            return self._hold_start + self.timing.long_threshold
        return None

    def _burst_deadline(self) -> float | None:
        burst = self._burst
        if not burst.count:
            return None
        if self.mode is ButtonMode.PRESS_ONLY:
            return burst.last_press_at + self.timing.double_window
        if self._held:
            return None  # the burst cannot end while the button is held
        end = burst.last_press_at + self.timing.double_window
        if self._released_at is not None:
            end = max(end, self._released_at + self.timing.debounce)
        return end

    def _due(self, now: float) -> DecodedGesture | None:
        long_at = self._long_deadline()
        burst_at = self._burst_deadline()
        if long_at is not None and long_at <= now and (burst_at is None or long_at <= burst_at):
            self._long_done = True
            self._burst.decided = True
            return self._gesture(Gesture.LONG, long_at, self._hold_start)
        if burst_at is not None and burst_at <= now:
            burst = self._burst
            self._burst = _Burst()
            gesture: Gesture | None = None
            if not burst.decided:
                if burst.count == 1:
                    gesture = Gesture.SINGLE
                elif burst.count == 2 and self.mode is ButtonMode.PRESS_ONLY:
                    gesture = Gesture.DOUBLE
            if gesture is not None:
                return self._gesture(gesture, burst_at, burst.first_at)
            return self._due(now)
        return None

    # -- press-only mode --------------------------------------------------
    def _press_only(self, t: float) -> list[DecodedGesture]:
        timing = self.timing
        burst = self._burst
        if burst.count and t - burst.last_press_at < timing.debounce:
            self.dropped += 1
            return []
        if burst.count and t - burst.last_press_at < timing.double_window:
            burst.count += 1
            burst.last_press_at = t
            if burst.count == 3 and not burst.decided:
                burst.decided = True
                return [self._gesture(Gesture.TRIPLE, t, burst.first_at)]
            return []
        self._burst = _Burst(count=1, first_at=t, last_press_at=t)
        return []

    def _gesture(self, gesture: Gesture, due: float, first: float) -> DecodedGesture:
        return DecodedGesture(gesture, max(due, self._last_t), first, self.button)


@dataclass
class GestureRouter:
    """One decoder per button: two buttons pressed together never make a double."""

    timing: GestureTiming = field(default_factory=GestureTiming)
    modes: dict[str, ButtonMode] = field(default_factory=dict)
    _decoders: dict[str, GestureDecoder] = field(default_factory=dict)

    def decoder(self, button: str) -> GestureDecoder:
        dec = self._decoders.get(button)
        if dec is None:
            mode = self.modes.get(button, ButtonMode.EDGES)
            dec = self._decoders[button] = GestureDecoder(mode, self.timing, button)
        return dec

    def feed(self, button: str, edge: Edge, t: float) -> list[DecodedGesture]:
        out = self.poll(t)
        out += self.decoder(button).feed(edge, t)
        return out

    def poll(self, now: float) -> list[DecodedGesture]:
        out: list[DecodedGesture] = []
        for dec in self._decoders.values():
            out += dec.poll(now)
        out.sort(key=lambda g: g.at)
        return out

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (x.next_deadline() for x in self._decoders.values()) if d is not None]
        return min(deadlines) if deadlines else None


# -- traces ---------------------------------------------------------------
class TraceError(ValueError):
    pass


@dataclass
class Trace:
    """A recorded or scripted sequence of edges, with the gestures it should give.

    Text format, one item a line, times in milliseconds, ``#`` starts a comment::

        mode edges            # or press_only (default edges)
        window 450            # optional timing overrides, ms
        0 press               # <ms> press|release [button]
        90 release
        expect 450 single     # expect <ms> <gesture> [button]
    """

    name: str = ""
    mode: ButtonMode = ButtonMode.EDGES
    timing: GestureTiming = field(default_factory=GestureTiming)
    edges: list[tuple[float, Edge, str]] = field(default_factory=list)
    expected: list[tuple[float, Gesture, str]] = field(default_factory=list)


def parse_trace(text: str, name: str = "") -> Trace:
    trace = Trace(name=name)
    timing: dict[str, float] = {}
    keys = {"window": "double_window", "long": "long_threshold", "debounce": "debounce"}
    for lineno, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{name or 'trace'} line {lineno}"
        try:
            if words[0] == "mode" and len(words) == 2:
                trace.mode = ButtonMode(words[1])
            elif words[0] in keys and len(words) == 2:
                timing[keys[words[0]]] = float(words[1]) / 1000
            elif words[0] == "expect" and len(words) in (3, 4):
                button = words[3] if len(words) == 4 else "button"
                trace.expected.append((float(words[1]) / 1000, Gesture(words[2]), button))
            elif len(words) in (2, 3):
                button = words[2] if len(words) == 3 else "button"
                trace.edges.append((float(words[0]) / 1000, Edge(words[1]), button))
            else:
                raise ValueError(raw.strip())
        except ValueError as exc:
            raise TraceError(f"{where}: cannot read {raw.strip()!r}") from exc
    try:
        trace.timing = GestureTiming(**timing)
    except ValueError as exc:
        raise TraceError(f"{name or 'trace'}: {exc}") from exc
    if any(b[0] < a[0] for a, b in zip(trace.edges, trace.edges[1:])):
        raise TraceError(f"{name or 'trace'}: times must not go backwards")
    return trace


def decode_trace(
    edges: Iterable[tuple[float, Edge, str]],
    mode: ButtonMode = ButtonMode.EDGES,
    timing: GestureTiming | None = None,
    polls: Iterable[float] = (),
) -> list[DecodedGesture]:
    """Decodes a whole trace, polling at ``polls`` too, then until idle."""
    router = GestureRouter(timing or GestureTiming())
    events: list[tuple[float, int, Edge | None, str]] = [(t, 1, e, b) for t, e, b in edges]
    events += [(t, 0, None, "") for t in polls]
    events.sort(key=lambda x: (x[0], x[1]))
    out: list[DecodedGesture] = []
    for t, _, edge, button in events:
        if edge is None:
            out += router.poll(t)
        else:
            router.modes.setdefault(button, mode)
            out += router.feed(button, edge, t)
    out += _drain(router)
    return out


def _drain(router: GestureRouter) -> Iterator[DecodedGesture]:
    while (deadline := router.next_deadline()) is not None:
        yield from router.poll(deadline)

"""The terminal button: characters (with auto-repeat) back into edges, then gestures."""

from __future__ import annotations

from balise_station.gestures import Gesture, GestureDecoder
from balise_station.sim.keyboard import LAG, KeyInterpreter


def gestures_from_keys(times: list[float]) -> list[Gesture]:
    """Replays key times as the simulator does: edges fed when they are known, the decoder LAG behind."""
    ki = KeyInterpreter()
    dec = GestureDecoder()
    out = []
    wake = sorted(times)
    now = wake[0]
    while True:
        edges = ki.key(now) if wake and now == wake[0] else ki.poll(now)
        if wake and now == wake[0]:
            wake.pop(0)
        for t, e in edges:
            assert t <= now
            out += dec.feed(e, t)
        out += dec.poll(now - LAG)
        nxt = [x for x in (wake[0] if wake else None, ki.next_deadline(),
                           (dec.next_deadline() or 0) + LAG if dec.next_deadline() else None) if x is not None]
        if not nxt:
            return [g.gesture for g in out]
        now = min(nxt)


def held(start: float, seconds: float, delay: float = 0.5, rate: float = 0.033) -> list[float]:
    times = [start]
    t = start + delay
    while t < start + seconds:
        times.append(t)
        t += rate
    return times


def test_one_tap_is_a_single() -> None:
    assert gestures_from_keys([1.0]) == [Gesture.SINGLE]


def test_two_taps_are_a_double() -> None:
    assert gestures_from_keys([1.0, 1.3]) == [Gesture.DOUBLE]


def test_holding_the_key_is_a_long_press_whatever_the_repeat_delay() -> None:
    for delay in (0.25, 0.5, 0.66):
        assert gestures_from_keys(held(1.0, 2.0, delay)) == [Gesture.LONG], delay


def test_short_hold_with_repeat_is_still_a_single() -> None:
    assert gestures_from_keys(held(1.0, 0.6, 0.3)) == [Gesture.SINGLE]


def test_presses_are_never_later_than_the_lag() -> None:
    ki = KeyInterpreter()
    for now in [1.0, 1.3]:
        for t, _ in ki.key(now):
            assert now - t <= LAG
    d = ki.next_deadline()
    assert [e for _, e in ki.poll(d)][1].value == "press"
    assert d - 1.3 <= LAG

"""Gesture decoder: the trace corpus and properties over random traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balise_station.gestures import (
    ButtonMode,
    Edge,
    Gesture,
    GestureDecoder,
    GestureTiming,
    TraceError,
    decode_trace,
    parse_trace,
)

TRACES = sorted((Path(__file__).parents[1] / "data" / "gestures").glob("*.trace"))
T = GestureTiming()


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_trace_corpus(path: Path) -> None:
    trace = parse_trace(path.read_text(), path.name)
    assert trace.expected, "a trace without expectations tests nothing"
    got = decode_trace(trace.edges, trace.mode, trace.timing)
    assert [(round(g.at * 1000), g.gesture, g.button) for g in got] == [
        (round(t * 1000), g, b) for t, g, b in trace.expected
    ]


def test_corpus_is_there() -> None:
    assert len(TRACES) >= 15


def test_bad_trace_lines_are_reported_with_their_line() -> None:
    with pytest.raises(TraceError, match="line 2"):
        parse_trace("0 press\n12 squeeze\n", "x.trace")
    with pytest.raises(TraceError, match="backwards"):
        parse_trace("10 press\n5 release\n")
    with pytest.raises(TraceError):
        parse_trace("window 10\ndebounce 40\n")


def test_long_fires_while_held_before_any_release() -> None:
    dec = GestureDecoder()
    assert dec.feed(Edge.PRESS, 10.0) == []
    assert dec.poll(11.19) == []
    assert dec.next_deadline() == pytest.approx(11.2)
    [g] = dec.poll(11.2)
    assert (g.gesture, g.at, dec.held) == (Gesture.LONG, pytest.approx(11.2), True)
    assert dec.feed(Edge.RELEASE, 14.0) == []
    assert dec.poll(100.0) == [] and dec.idle()


def test_single_waits_for_the_window() -> None:
    dec = GestureDecoder()
    dec.feed(Edge.PRESS, 0.0)
    dec.feed(Edge.RELEASE, 0.1)
    assert dec.poll(0.449) == []
    assert [g.gesture for g in dec.poll(0.45)] == [Gesture.SINGLE]


def test_press_only_ignores_releases_and_never_gives_long() -> None:
    dec = GestureDecoder(ButtonMode.PRESS_ONLY)
    dec.feed(Edge.PRESS, 0.0)
    dec.feed(Edge.RELEASE, 5.0)
    assert dec.dropped == 1
    assert dec.poll(100) == [] and dec.idle()


# -- properties -----------------------------------------------------------
@st.composite
def edges_intent(draw, start: float):
    """One gesture as a person would do it on a press/release button, with its trace."""
    kind = draw(st.sampled_from([Gesture.SINGLE, Gesture.DOUBLE, Gesture.LONG]))
    edges: list[tuple[float, Edge]] = []

    def hold(t0: float, length: float) -> float:
        edges.append((t0, Edge.PRESS))
        if length > 0.06 and draw(st.booleans()):  # contact bounce at the start
            b1 = draw(st.floats(0.001, 0.01))
            b2 = draw(st.floats(0.001, T.debounce - 0.002))
            edges.append((t0 + b1, Edge.RELEASE))
            edges.append((t0 + b1 + b2, Edge.PRESS))
        if length > 0.08 and draw(st.booleans()):  # repeated notification
            edges.append((t0 + 0.07, Edge.PRESS))
        edges.append((t0 + length, Edge.RELEASE))
        return t0 + length

    if kind is Gesture.SINGLE:
        length = draw(st.floats(0.015, T.long_threshold - 0.05))
        end = hold(start, length)
        due = max(start + T.double_window, end + T.debounce)
        nxt = max(start + T.double_window, end + T.debounce)
    elif kind is Gesture.DOUBLE:
        l1 = draw(st.floats(0.015, 0.2))
        gap = draw(st.floats(l1 + T.debounce + 0.005, T.double_window - 0.005))
        hold(start, l1)
        l2 = draw(st.floats(0.015, T.long_threshold - 0.05))
        end = hold(start + gap, l2)
        due = start + gap
        nxt = max(start + gap + T.double_window, end + T.debounce)
    else:
        length = draw(st.floats(T.long_threshold + 0.01, 4.0))
        end = hold(start, length)
        due = start + T.long_threshold
        nxt = end + T.debounce
    return kind, due, edges, nxt


@st.composite
def edges_session(draw):
    t = draw(st.floats(0, 100))
    intents, edges = [], []
    for _ in range(draw(st.integers(1, 6))):
        kind, due, e, nxt = draw(edges_intent(t))
        intents.append((kind, due))
        edges += e
        t = nxt + draw(st.floats(0.001, 3.0))
    return intents, sorted(edges, key=lambda x: x[0])


@settings(max_examples=300, deadline=None)
@given(edges_session())
def test_what_the_person_did_is_what_is_decoded(session) -> None:
    intents, edges = session
    got = decode_trace([(t, e, "b") for t, e in edges])
    assert [g.gesture for g in got] == [k for k, _ in intents]
    for g, (_, due) in zip(got, intents):
        assert g.at == pytest.approx(due, abs=1e-9)


@st.composite
def press_only_session(draw):
    t = draw(st.floats(0, 100))
    intents, presses = [], []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 4))
        times = [t]
        for _ in range(n - 1):
            times.append(times[-1] + draw(st.floats(T.debounce + 0.01, T.double_window - 0.005)))
        dup = [x + draw(st.floats(0.0, T.debounce - 0.002)) for x in times if draw(st.booleans())]
        presses += times + dup
        if n == 1:
            intents.append((Gesture.SINGLE, times[-1] + T.double_window))
        elif n == 2:
            intents.append((Gesture.DOUBLE, times[-1] + T.double_window))
        else:
            intents.append((Gesture.TRIPLE, times[2]))
        t = times[-1] + T.double_window + draw(st.floats(0.001, 3.0))
    return intents, sorted(presses)


@settings(max_examples=300, deadline=None)
@given(press_only_session())
def test_press_only_tags_decode_what_was_pressed(session) -> None:
    intents, presses = session
    got = decode_trace([(t, Edge.PRESS, "tag") for t in presses], ButtonMode.PRESS_ONLY)
    assert [(g.gesture, pytest.approx(g.at)) for g in got] == [(k, pytest.approx(d)) for k, d in intents]


raw_edges = st.lists(
    st.tuples(st.floats(0, 2.0), st.sampled_from(list(Edge)), st.sampled_from(["a", "b"])),
    max_size=40,
)


def _timeline(steps):
    t, out = 0.0, []
    for dt, edge, button in steps:
        t += dt
        out.append((t, edge, button))
    return out


@settings(max_examples=300, deadline=None)
@given(raw_edges, st.lists(st.floats(0, 40), max_size=30), st.sampled_from(list(ButtonMode)))
def test_decoding_does_not_depend_on_when_poll_is_called(steps, polls, mode) -> None:
    edges = _timeline(steps)
    plain = decode_trace(edges, mode)
    polled = decode_trace(edges, mode, polls=polls)
    assert plain == polled


@settings(max_examples=300, deadline=None)
@given(raw_edges, st.sampled_from(list(ButtonMode)))
def test_invariants_on_any_trace(steps, mode) -> None:
    edges = _timeline(steps)
    got = decode_trace(edges, mode)
    presses = {b: [t for t, e, bb in edges if bb == b and e is Edge.PRESS] for b in ("a", "b")}
    for g in got:
        assert g.at >= g.first_press_at
        assert g.first_press_at in presses[g.button]
        if g.gesture is Gesture.SINGLE:
            assert g.at >= g.first_press_at + T.double_window - 1e-9
        if mode is ButtonMode.PRESS_ONLY:
            assert g.gesture is not Gesture.LONG
        else:
            assert g.gesture is not Gesture.TRIPLE
    for b in ("a", "b"):
        mine = [g.at for g in got if g.button == b]
        assert mine == sorted(mine)


@settings(max_examples=300, deadline=None)
@given(raw_edges, st.sampled_from(list(ButtonMode)))
def test_buttons_are_decoded_independently(steps, mode) -> None:
    edges = _timeline(steps)
    together = decode_trace(edges, mode)
    for b in ("a", "b"):
        alone = decode_trace([x for x in edges if x[2] == b], mode)
        assert [g for g in together if g.button == b] == alone

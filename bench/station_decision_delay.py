"""How long after the first press the station decides a gesture, on a real event loop.

Single = double-press window + at most 5 ms is the target. Run:
    PYTHONPATH=src python bench/station_decision_delay.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from balise_station.gestures import Edge, GestureRouter, GestureTiming


async def measure(kind: str, runs: int) -> list[float]:
    timing = GestureTiming()
    router = GestureRouter(timing)
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    handle: list[asyncio.TimerHandle | None] = [None]
    done = asyncio.Event()
    first = [0.0]

    def decided(gs) -> None:
        for g in gs:
            delays.append(time.monotonic() - first[0])
            done.set()

    def schedule() -> None:  # exactly what the station does: one timer at the next deadline
        if handle[0] is not None:
            handle[0].cancel()
        d = router.next_deadline()
        if d is not None:
            handle[0] = loop.call_later(max(0.0, d - time.monotonic()), poll)

    def poll() -> None:
        decided(router.poll(time.monotonic()))
        schedule()

    def edge(e: Edge) -> None:
        decided(router.feed("b", e, time.monotonic()))
        schedule()

    for _ in range(runs):
        done.clear()
        first[0] = time.monotonic()
        edge(Edge.PRESS)
        if kind == "single":
            await asyncio.sleep(0.08)
            edge(Edge.RELEASE)
        elif kind == "double":
            await asyncio.sleep(0.08)
            edge(Edge.RELEASE)
            await asyncio.sleep(0.12)
            edge(Edge.PRESS)
            await asyncio.sleep(0.08)
            edge(Edge.RELEASE)
        await done.wait()
        if kind == "long":
            edge(Edge.RELEASE)
        await asyncio.sleep(timing.double_window + 0.05)
    return delays


def report(name: str, delays: list[float], target: float | None) -> None:
    ms = sorted(d * 1000 for d in delays)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    line = f"{name:<7} n={len(ms):3d}  median {statistics.median(ms):7.2f} ms  p99 {p99:7.2f} ms  max {ms[-1]:7.2f} ms"
    if target is not None:
        line += f"   (target <= {target:.0f} ms: {'ok' if ms[-1] <= target else 'MISSED'})"
    print(line)


async def main() -> None:
    t = GestureTiming()
    print(f"window {t.double_window * 1000:.0f} ms, long threshold {t.long_threshold * 1000:.0f} ms; "
          "delay measured from the first press")
    report("single", await measure("single", 40), t.double_window * 1000 + 5)
    report("double", await measure("double", 20), None)
    report("long", await measure("long", 10), t.long_threshold * 1000 + 5)
    t0 = time.perf_counter()
    router = GestureRouter(t)
    n = 100_000
    for i in range(n):
        router.feed("b", Edge.PRESS if i % 2 == 0 else Edge.RELEASE, i * 0.3)
    print(f"decoder cost: {(time.perf_counter() - t0) / n * 1e6:.2f} us per edge")


if __name__ == "__main__":
    asyncio.run(main())

"""The web process's CPU per press and per heartbeat, through Django's ASGI application and
through the device fast path (balise.api.fastpath), on the database named by DATABASE_URL
(else a fresh SQLite file). Presses alternate between the two, a distinct person each (a
press while her alert is open would join it), in rounds, so that both see the same
database and the same machine; no dispatcher runs (the deliveries are left in the outbox):
only what accepting costs.

    python bench/press_cpu.py [--presses 200] [--rounds 3]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_press python bench/press_cpu.py --fresh

Prints, per round and path, the process's CPU (all its threads) per request, median and
p99 of the answer time, and the statuses seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch_latency import setup_django, setup_people  # noqa: E402


def press_body() -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    return json.dumps({"client_id": str(uuid.uuid4()), "kind": "prevention", "gesture": "single", "triggered_at": now,
                       "fixes": [{"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
                                  "recorded_at": now, "source": "gps"}]}).encode()


async def call(app, path: str, body: bytes, token: str) -> int:
    sent, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


async def measure(app, path: str, items: list[tuple[bytes, str]]) -> tuple[float, list[float], dict]:
    times, statuses = [], {}
    cpu = time.process_time()
    for body, token in items:
        start = time.perf_counter()
        status = await call(app, path, body, token)
        times.append(time.perf_counter() - start)
        statuses[status] = statuses.get(status, 0) + 1
    return (time.process_time() - cpu) / len(items), sorted(times), statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=200, help="presses per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="PostgreSQL: drop and re-create the database")
    args = parser.parse_args()
    if args.presses < 1 or args.rounds < 1:
        parser.error("--presses and --rounds must be at least 1")
    os.environ.setdefault("BALISE_SECRET_KEY", "bench-only-secret-key")
    os.environ["BALISE_ALERT_BUDGET_DEVICE"] = "1000000/1000000"
    os.environ["BALISE_ALERT_BUDGET_ASSOCIATION"] = "1000000/1000000"
    setup_django("balise-press-cpu-", fresh=args.fresh)
    from django.db import connection

    from balise.api.fastpath import DeviceFastPath
    from balise.asgi import django_application

    paths = {"Django": django_application, "fast path": DeviceFastPath(django_application)}
    tokens = setup_people(args.presses * len(paths) * args.rounds + 1)

    async def run() -> None:
        warm = tokens.pop()
        for app in paths.values():  # caches, prepared plans, imports
            await call(app, "/api/v1/heartbeat", b"{}", warm)
        print(f"press_cpu  engine={connection.vendor}  cpus={os.cpu_count()}  load={os.getloadavg()[0]:.2f}")
        for n in range(1, args.rounds + 1):
            for name, app in paths.items():
                mine = [tokens.pop() for _ in range(args.presses)]
                cpu, times, statuses = await measure(app, "/api/v1/alerts", [(press_body(), t) for t in mine])
                beat_cpu, beat_times, beat_statuses = await measure(
                    app, "/api/v1/heartbeat", [(b'{"battery_percent": 80}', t) for t in mine])
                print(f"round {n}  {name:9}  press: {cpu * 1000:5.2f} ms CPU, answer p50 {times[len(times) // 2] * 1000:5.1f}"
                      f" p99 {times[int(len(times) * 0.99) - 1] * 1000:5.1f} ms {statuses}   heartbeat: "
                      f"{beat_cpu * 1000:5.2f} ms CPU, p50 {beat_times[len(beat_times) // 2] * 1000:5.1f} ms "
                      f"{beat_statuses}")

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`database is locked` on SQLite under `balise serve`: how many requests fail.

Starts `balise serve` (ASGI, with its dispatcher) on a fresh SQLite file named by a
sqlite:/// DATABASE_URL, as the browser tests do, and drives it for --duration seconds
with what a live alert brings at once: devices posting alerts then batches of fixes,
contacts answering from their links (POST /s/<token>/answer) while their live pages
listen (SSE). Prints the answers by status code and the server's "database unavailable"
lines (a 503 with Retry-After: a lock held longer than the busy timeout, or a
transaction refused at once).

    python bench/sqlite_locks.py                              # the settings' options
    python bench/sqlite_locks.py --url-query "transaction_mode=DEFERRED&timeout=5"
                                                              # Django's defaults (before)

Load the machine first to see it (e.g. `python3 -c "while True: pass" &` twice).
Bounded: --duration seconds of load (at most 120), loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from dispatch_latency import balise, free_port, setup_people, wait_http  # noqa: E402


def _fix(now: str) -> dict:
    return {"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10, "recorded_at": now, "source": "gps"}


async def drive(base: str, tokens: list[str], duration: float, statuses: collections.Counter) -> None:
    import httpx

    from balise.people.models import Contact

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    stop = time.monotonic() + duration
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def post(what: str, url: str, **kwargs):
            try:
                r = await client.post(url, **kwargs)
            except httpx.TransportError as exc:  # (counted, not fatal: the figures are about the others)
                statuses[f"{what} {type(exc).__name__}"] += 1
                return None
            statuses[f"{what} {r.status_code}"] += 1
            return r

        async def person(i: int) -> None:
            token = tokens[i]
            headers = {"Authorization": f"Bearer {token}"}
            while time.monotonic() < stop:
                now = datetime.now(timezone.utc).isoformat()
                client_id = str(uuid.uuid4())
                r = await post("alert", f"{base}/api/v1/alerts", headers=headers, json={
                    "client_id": client_id, "kind": "alarm", "gesture": "long", "triggered_at": now,
                    "fixes": [_fix(now)]})
                if r is None or r.status_code != 201:
                    continue
                alert_id = r.json()["id"]
                contacts = await asyncio.to_thread(_contact_tokens, alert_id, Contact)
                streams = [asyncio.create_task(_listen(client, f"{base}/s/{t}/events", stop)) for t in contacts[:2]]
                for round_ in range(3):
                    now = datetime.now(timezone.utc).isoformat()
                    await post("fixes", f"{base}/api/v1/alerts/{client_id}/fixes", headers=headers,
                               json={"fixes": [_fix(now), _fix(now)]})
                    t = contacts[round_ % len(contacts)]
                    await post("answer", f"{base}/s/{t}/answer", data={"answer": "on_my_way"},
                               headers={"Accept": "application/json"})
                for task in streams:
                    task.cancel()

        await asyncio.gather(*(person(i) for i in range(len(tokens))))


def _contact_tokens(alert_id: int, Contact) -> list[str]:
    from balise.alerts.models import Alert
    from balise.tracking.shortlinks import short_url

    alert = Alert.objects.get(pk=alert_id)
    return [short_url(alert, c).rsplit("/", 1)[1]
            for c in Contact.objects.filter(person_id=alert.person_id).values_list("pk", flat=True)]


async def _listen(client, url: str, stop: float) -> None:
    try:
        async with client.stream("GET", url) as r:
            async for _chunk in r.aiter_text():
                if time.monotonic() > stop:
                    return
    except Exception:  # (cancelled, or the server closed it)
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=24, help="devices driven at once")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load (bounded to 120)")
    parser.add_argument("--url-query", default="", help="query of the sqlite:/// DATABASE_URL given to serve")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="balise-sqlite-locks-")
    os.environ["BALISE_DATA_DIR"] = data_dir
    os.environ.setdefault("BALISE_SECRET_KEY", "bench-only-secret-key-not-for-production")
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "balise.settings"
    sys.path.insert(0, str(ROOT / "src"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    tokens = setup_people(args.people)

    port = free_port()
    query = f"?{args.url_query}" if args.url_query else ""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), DATABASE_URL=f"sqlite:///{data_dir}/balise.sqlite3{query}",
               BALISE_CONSOLE_OUTBOX=str(Path(data_dir) / "outbox.jsonl"), BALISE_DISPATCH_POLL_SECONDS="0.2")
    log = Path(data_dir) / "server.log"
    server = balise(["serve", "--port", str(port)], env, log)
    statuses: collections.Counter = collections.Counter()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server)
        asyncio.run(drive(f"http://127.0.0.1:{port}", tokens, min(args.duration, 120), statuses))
    finally:
        server.terminate()
        server.wait(timeout=60)
    unavailable = [line for line in log.read_text(errors="replace").splitlines() if "database unavailable" in line]
    print(f"load: {os.getloadavg()[0]:.1f}  people: {args.people}  duration: {args.duration:.0f} s  "
          f"url query: {args.url_query or '(none)'}")
    for key in sorted(statuses):
        print(f"  {key}: {statuses[key]}")
    print(f"server 'database unavailable' (503): {len(unavailable)}  (server log: {log})")
    for line in unavailable[:5]:
        print("  " + line[:200])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

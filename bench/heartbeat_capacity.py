"""Heartbeat capacity of `balise serve`, measured with ApacheBench (Debian's
apache2-utils): closed loops, so that the figure is the server's and not a Python
client's (bench/dispatch_latency.py --mode heartbeats runs an open loop in Python, which
shares the cores with the server). ab speaks HTTP/1.0, to which uvicorn answers
`connection: close` whatever -k asks: every heartbeat is a new TCP connection, as a
station's beat once a minute is.

Starts `balise serve` (optionally with --workers) on SQLite in a temporary directory or
on DATABASE_URL (the database re-created), makes --devices devices, and at each
concurrency posts REQUESTS heartbeats spread over them: one ab per device, its own
token, the concurrency shared between them (as a region's devices beat, each its own
row; --devices 1 puts every heartbeat on one row, whose lock then serialises them on
PostgreSQL). Prints the requests per second of all of them together, their 50/95/99/100 %
answer times (ms, every request of every ab), and the server's CPU per heartbeat.

    python bench/heartbeat_capacity.py                       # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_hb python bench/heartbeat_capacity.py --workers 2

Bounded: loopback only, REQUESTS per concurrency (default 6000).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dispatch_latency as harness  # noqa: E402  (the same server start-up and devices)

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="`balise serve --workers N`")
    parser.add_argument("--requests", type=int, default=6000, help="heartbeats per concurrency")
    parser.add_argument("--concurrency", default="8,32,64", help="comma-separated concurrencies")
    parser.add_argument("--devices", type=int, default=16,
                        help="devices the heartbeats are spread over (one ab each; at most the concurrency)")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        parser.error("ab is missing: install Debian's apache2-utils")
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency: a comma-separated list of numbers")
    if not levels or min(levels) < 1 or not 1 <= args.devices <= 200 or args.requests < 1:
        parser.error("--concurrency, --devices (1 to 200) and --requests must be positive")

    data_dir, engine = harness.setup_django("balise-heartbeats-", fresh=True)
    tokens = harness.setup_people(max(args.devices, 1))
    port = harness.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    env.update(PYTHONPATH=str(harness.SRC), BALISE_DATA_DIR=data_dir, BALISE_PROVIDERS="console",
               BALISE_LOG_LEVEL="WARNING", BALISE_SECRET_KEY="bench-only-secret-key")
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.workers > 1:
        serve += ["--workers", str(args.workers)]
    proc = harness.balise(serve, env, Path(data_dir) / "serve.log")
    try:
        harness.wait_http(f"http://127.0.0.1:{port}/health", proc)
        time.sleep(5)  # (the server loads its gazetteer after it answers /health)
        body = Path(data_dir) / "heartbeat.json"
        body.write_text(json.dumps({"battery_percent": 80, "button_connected": True}))
        print(f"balise heartbeats (ab)  engine={engine}  workers={args.workers}  devices={args.devices}"
              f"  cpus={os.cpu_count()}  load={os.getloadavg()[0]:.2f}", flush=True)
        for c in levels:
            cpu_before = harness.cpu_seconds([proc.pid])
            counts, seconds, times = run_ab(tokens[:min(args.devices, c)], c, args.requests, body,
                                            f"http://127.0.0.1:{port}/api/v1/heartbeat", Path(data_dir))
            cpu = (harness.cpu_seconds([proc.pid]) - cpu_before) / max(counts["complete"], 1) * 1000
            print(f"concurrency {c}: {counts['complete']} answered, {counts['failed']} failed,"
                  f" {counts['non_2xx']} not 2xx | {counts['complete'] / seconds:.0f} heartbeats/s"
                  f" | ms: {percentiles(times)} | server CPU per heartbeat: {cpu:.2f} ms", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
        if not os.environ.get("DATABASE_URL"):
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


AB_COUNTS = {"Complete requests": "complete", "Failed requests": "failed", "Non-2xx responses": "non_2xx"}


def run_ab(tokens: list[str], concurrency: int, requests: int, body: Path, url: str, scratch: Path):
    """One ab per token at once, REQUESTS and CONCURRENCY shared between them: the counts
    summed, the seconds from the first start to the last end, every request's time (ms)."""
    runs, began = [], time.monotonic()
    for i, token in enumerate(tokens):
        n = requests // len(tokens) + (i < requests % len(tokens))
        c = concurrency // len(tokens) + (i < concurrency % len(tokens))
        if n == 0:
            continue
        times = scratch / f"ab-{i}.tsv"
        runs.append((times, subprocess.Popen(
            ["ab", "-q", "-k", "-n", str(n), "-c", str(min(c, n)), "-p", str(body), "-T", "application/json",
             "-g", str(times), "-H", f"Authorization: Bearer {token}", url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    counts = {"complete": 0, "failed": 0, "non_2xx": 0}
    times: list[int] = []
    outputs = [(path, run.communicate()[0]) for path, run in runs]
    seconds = time.monotonic() - began
    for path, out in outputs:
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in AB_COUNTS:
                counts[AB_COUNTS[key.strip()]] += int(value.split()[0])
        # ab -g: a header, then one tab-separated line per request; ttime (ms) is the 5th column
        times += [int(row.split("\t")[4]) for row in path.read_text().splitlines()[1:] if row.count("\t") >= 5]
    return counts, seconds, sorted(times)


def percentiles(times: list[int]) -> str:
    if not times:
        return "no answer"
    return " ".join(f"p{q} {times[min(len(times) - 1, int(len(times) * q / 100))]}" for q in (50, 95, 99)) + \
        f" max {times[-1]}"


if __name__ == "__main__":
    sys.exit(main())

"""Heartbeat capacity of `balise serve`, measured with ApacheBench (Debian's
apache2-utils): a closed loop of keep-alive connections, so that the figure is the
server's and not a Python client's (bench/dispatch_latency.py --mode heartbeats runs an
open loop in Python, which shares the cores with the server).

Starts `balise serve` (optionally with --workers) on SQLite in a temporary directory or
on DATABASE_URL (the database re-created), makes 50 devices, and posts REQUESTS
heartbeats of one device at each concurrency; prints ab's requests per second and its
50/95/99/100 % answer times (ms).

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

KEPT = ("Complete requests", "Failed requests", "Non-2xx", "Requests per second")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="`balise serve --workers N`")
    parser.add_argument("--requests", type=int, default=6000, help="heartbeats per concurrency")
    parser.add_argument("--concurrency", default="8,32,64", help="comma-separated concurrencies")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        parser.error("ab is missing: install Debian's apache2-utils")
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency: a comma-separated list of numbers")

    data_dir, engine = harness.setup_django("balise-heartbeats-", fresh=True)
    token = harness.setup_people(50)[0]
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
        print(f"balise heartbeats (ab)  engine={engine}  workers={args.workers}  cpus={os.cpu_count()}"
              f"  load={os.getloadavg()[0]:.2f}", flush=True)
        for c in levels:
            cpu_before = harness.cpu_seconds([proc.pid])
            out = subprocess.run(
                ["ab", "-q", "-k", "-n", str(args.requests), "-c", str(c), "-p", str(body), "-T", "application/json",
                 "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}/api/v1/heartbeat"],
                capture_output=True, text=True, check=False).stdout
            lines = [" ".join(line.split()) for line in out.splitlines()
                     if line.startswith(KEPT) or line.strip().startswith(("50%", "95%", "99%", "100%"))]
            cpu = (harness.cpu_seconds([proc.pid]) - cpu_before) / args.requests * 1000
            print(f"concurrency {c}: " + " | ".join(lines) + f" | server CPU per heartbeat: {cpu:.2f} ms",
                  flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
        if not os.environ.get("DATABASE_URL"):
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

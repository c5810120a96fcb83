"""Benchmark: N concurrent recording sessions streaming segments to a real server.

Prints p50/p99/max of the time from a segment upload to its signed receipt, and the
server's CPU time per segment. The server is `balise serve` in a child process on
loopback (SQLite in a fresh data directory, or PostgreSQL with --database-url).

    python bench/evidence_upload.py                        # 200 sessions, 6 segments, 5 s apart
    python bench/evidence_upload.py --sessions 50 --pace 0 # as fast as possible
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its live children (uvicorn workers), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # the server or a direct child
            total += sum(int(fields[i]) for i in (11, 12))
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_world(sessions: int):
    """Devices with tokens and registered evidence keys, straight through the ORM."""
    import django

    django.setup()
    from django.core.management import call_command

    from balise.associations.models import Association
    from balise.devices.actions import issue_token
    from balise.devices.models import Device
    from balise.evidence import actions, conf
    from balise.people.models import Person
    from balise_evidence import crypto

    call_command("migrate", interactive=False, verbosity=0)
    association = Association.objects.create(name="Bench", slug=f"bench-{random.randrange(1 << 30)}")
    devices = []
    for i in range(sessions):
        person = Person.objects.create(association=association, display_name=f"P{i}")
        device = Device.objects.create(association=association, holder=person, kind=Device.Kind.STATION,
                                       hardware_id=f"bench-{association.slug}-{i}", status=Device.Status.ASSIGNED)
        key = crypto.DeviceKey.generate()
        actions.register_device_key(device, key.public_pem)
        devices.append((issue_token(device), key))
    return devices, conf.keys().seal


def make_uploads(devices, seal, segments: int) -> list[list[dict]]:
    """Every session's records, sealed and signed before the clock starts."""
    from balise_evidence.audio import GeneratedMicrophone, OpusEncoder
    from balise_evidence.recorder import Recorder

    mic, encoder, stream = GeneratedMicrophone(seconds=segments * 5 - 0.5), OpusEncoder(), b""
    while pcm := mic.read(16000):
        stream += encoder.write(pcm)
    tail = encoder.close()
    out = []
    for _token, key in devices:
        recorder = Recorder(key, seal.public_key)
        records = [recorder.open(), *recorder.feed(stream)]
        records += recorder.close(tail)
        out.append([r.to_json() for r in records])
    return out


async def run_session(client, url, token, records, pace, latencies, errors, start_delay):
    import httpx

    await asyncio.sleep(start_delay)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for i, record in enumerate(records):
        body = json.dumps(record).encode()
        t0 = time.perf_counter()
        try:
            r = await client.post(url, content=body, headers=headers)
            ok = r.status_code in (200, 201) and "signature" in r.json()
        except httpx.HTTPError:
            ok = False
        elapsed = time.perf_counter() - t0
        if not ok:
            errors.append(record["header"]["seq"])
        elif record["header"]["kind"] == "segment":
            latencies.append(elapsed)
        if pace and i < len(records) - 1:
            await asyncio.sleep(max(0.0, pace - elapsed))


async def drive(base, devices, uploads, pace):
    import httpx

    latencies, errors = [], []
    limits = httpx.Limits(max_connections=len(devices), max_keepalive_connections=len(devices))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(
            run_session(client, f"{base}/api/v1/evidence/records", token, records, pace, latencies, errors,
                        random.uniform(0, pace))
            for (token, _key), records in zip(devices, uploads)))
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--segments", type=int, default=6, help="segments of about 5 s per session")
    parser.add_argument("--pace", type=float, default=5.0, help="seconds between a session's segments (0: no wait)")
    parser.add_argument("--workers", type=int, default=0,
                        help="uvicorn worker processes (default 0: `balise serve`, one process)")
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="balise-bench-")
    os.environ.update(BALISE_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="balise.settings",
                      BALISE_SECRET_KEY="bench-only", BALISE_LOG_LEVEL="ERROR")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)

    print(f"preparing {args.sessions} devices and sessions ...", flush=True)
    devices, seal = setup_world(args.sessions)
    uploads = make_uploads(devices, seal, args.segments)

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if args.workers:
        command = ["-m", "uvicorn", "balise.asgi:application", "--port", str(port), "--workers", str(args.workers),
                   "--log-level", "warning", "--no-access-log", "--lifespan", "off"]
    else:
        command = ["-c", "import sys; from balise.cli import main; sys.exit(main())", "serve", "--port", str(port),
                   "--no-dispatcher"]
    server = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        cpu0, t0, client0 = cpu_seconds(server.pid), time.perf_counter(), time.process_time()
        latencies, errors = asyncio.run(drive(base, devices, uploads, args.pace))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client0
    finally:
        server.terminate()
        server.wait(timeout=30)

    records = sum(len(u) for u in uploads)
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0] * 99
    print(f"server: {f'uvicorn, {args.workers} workers' if args.workers else 'balise serve (one process)'}; "
          f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; {args.sessions} sessions x "
          f"{args.segments} segments, pace {args.pace} s; {os.cpu_count()} CPUs")
    print(f"records sent: {records} ({len(latencies)} segments), errors: {len(errors)}, wall time {wall:.1f} s, "
          f"{records / wall:.0f} records/s")
    print(f"upload -> signed receipt: p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms  (target p99 <= 300 ms)")
    print(f"server CPU: {cpu:.2f} s total, {cpu / records * 1000:.2f} ms per record "
          f"(segments, open and close records together); load generator CPU {client_cpu:.2f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

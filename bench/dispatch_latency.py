"""Alert-to-provider latency and sustained throughput of the alert spine.

Starts `balise serve` (and optionally more web processes and `balise dispatch`
processes), creates DEVICES people with five consenting contacts and a device each,
posts prevention alerts (one SMS to each of the five contacts) at a fixed rate over
HTTP, and times every message's arrival at a webhook sink on loopback, in its own
process.

Latency is measured two ways, both printed:
  server: from the alert's created_at, stored by the server when the request reached
          it (after authentication, just before the transaction), to the sink;
  client: from the moment the client sent the request (an upper bound: it includes
          the client's connection and the server's queueing) to the sink.
Throughput: alerts accepted per second while sending, and alerts fully delivered
(all five messages at the sink) per second from the first send to the last arrival.

    # SQLite (a fresh database in a temporary directory)
    python bench/dispatch_latency.py --rate 20 --duration 10
    # the highest rate held with p99 <= 250 ms, on `balise serve --workers 2`
    python bench/dispatch_latency.py --ramp 20,50,100,200 --duration 10 --workers 2
    # heartbeats (answer time, p99 <= 50 ms), ramped
    python bench/dispatch_latency.py --mode heartbeats --ramp 200,500,1000,2000 --duration 5
    # PostgreSQL (the database is created if missing; its tables are reused). --fresh
    # re-creates it: the disk is then busy for minutes, and the tail shows it (p99 at
    # 20/s from 30 to 680 ms on this machine): take latency figures on reused tables.
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_proof_bench \\
        python bench/dispatch_latency.py --fresh --rate 200 --duration 10 --dispatchers 1

Bounded: at most --duration seconds of sending, --drain seconds of waiting, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAMP_P99_MS = 250.0  # issue 16: the highest alert rate held with p99 receipt -> sink at most this
HEARTBEAT_P99_MS = 50.0
SRC = ROOT / "src"


# -- the sink, in its own process -------------------------------------------------------


def sink_main(port_pipe, stop_event, results_pipe) -> None:
    """A minimal keep-alive HTTP/1.1 server: notes (wall time, Idempotency-Key) per request."""
    arrivals: list[tuple[float, str]] = []
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = time.time()
                length, key = 0, ""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"idempotency-key":
                        key = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                arrivals.append((at, key))
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_pipe.send(server.sockets[0].getsockname()[1])
        while not stop_event.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())
    results_pipe.send(arrivals)


def start_sink():
    """The sink in its own process: (port, stop event, pipe that receives its arrivals
    once stopped)."""
    ctx = multiprocessing.get_context("spawn")
    port_r, port_w = ctx.Pipe(False)
    res_r, res_w = ctx.Pipe(False)
    stop = ctx.Event()
    ctx.Process(target=sink_main, args=(port_w, stop, res_w), daemon=True).start()
    return port_r.recv(), stop, res_r


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def balise(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "balise", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


# -- data -------------------------------------------------------------------------------


def setup_people(count: int) -> list[str]:
    """COUNT people with five consenting contacts and a device each; returns the tokens."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from balise.associations.models import Association
    from balise.devices.models import Device, DeviceCredential, hash_token
    from balise.people.models import Contact, Person

    tag = uuid.uuid4().hex[:8]
    with transaction.atomic():
        association = Association.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}", on_call_number="+33472000000")
        cancel, duress = make_password("2468"), make_password("1357")
        people = Person.objects.bulk_create(
            Person(association=association, display_name=f"P{i}", cancel_pin_hash=cancel, duress_pin_hash=duress)
            for i in range(count)
        )
        Contact.objects.bulk_create(
            Contact(person=p, position=j, name=f"C{j}", phone=f"+3361{i:05d}{j:02d}", consent=Contact.Consent.ACCEPTED)
            for i, p in enumerate(people) for j in range(1, 6)
        )
        devices = Device.objects.bulk_create(
            Device(association=association, holder=p, kind=Device.Kind.STATION, hardware_id=f"bench-{tag}-{i}",
                   status=Device.Status.ASSIGNED)
            for i, p in enumerate(people)
        )
        tokens = [f"bal_bench_{tag}_{i}_{uuid.uuid4().hex}" for i in range(count)]
        DeviceCredential.objects.bulk_create(
            DeviceCredential(device=d, token_hash=hash_token(t), prefix=t[:8]) for d, t in zip(devices, tokens)
        )
    return tokens


# -- load -------------------------------------------------------------------------------


async def send_alerts(bases: list[str], tokens: list[str], rate: float, count: int, sent_at: dict, errors: list) -> float:
    """Open loop: alert i leaves at i / RATE, whatever the server's answers."""
    import httpx

    # An idle connection is dropped before uvicorn's 5 s keep-alive ends: at equal times,
    # a request sent on a connection the server was closing got no answer (ReadError).
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            client_id = str(uuid.uuid4())
            now = datetime.now(timezone.utc).isoformat()
            body = {"client_id": client_id, "kind": "prevention", "gesture": "single", "triggered_at": now,
                    "fixes": [{"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10,
                               "recorded_at": now, "source": "gps"}]}
            token = tokens[i % len(tokens)]
            sent_at[client_id] = time.time()
            try:
                r = await client.post(f"{bases[i % len(bases)]}/api/v1/alerts", json=body,
                                      headers={"Authorization": f"Bearer {token}"})
                if r.status_code != 201:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)

        return await open_loop(rate, count, one)


async def open_loop(rate: float, count: int, one) -> float:
    """Start ONE(i) at i / RATE seconds for i < COUNT, whatever the earlier answers (an
    open loop: a slow server does not slow the offered load); the seconds it took."""
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return time.monotonic() - start


def quantiles(values: list[float]) -> str:
    if not values:
        return "no data"
    values = sorted(values)

    def q(p: float) -> float:
        return values[min(len(values) - 1, max(0, round(p * (len(values) - 1))))] * 1000

    return f"p50 {q(0.5):7.1f} ms   p95 {q(0.95):7.1f} ms   p99 {q(0.99):7.1f} ms   max {values[-1] * 1000:7.1f} ms"


async def send_heartbeats(bases: list[str], tokens: list[str], rate: float, count: int, latencies: list,
                          errors: list) -> float:
    """Open loop of heartbeats (as a station sends them), each timed from send to answer."""
    import httpx

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=2.0)
    # At most 256 requests in httpx at once: its connection pool rescans every queued request
    # at each step (thousands queued stalled the client itself, not the server). A request
    # that waits here is timed from when it was due, so the wait counts in its latency.
    gate = asyncio.Semaphore(256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> None:
            started = time.monotonic()
            try:
                async with gate:
                    r = await client.post(f"{bases[i % len(bases)]}/api/v1/heartbeat",
                                          json={"battery_percent": 50 + i % 50, "button_connected": True},
                                          headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    return
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                return
            latencies.append(time.monotonic() - started)

        return await open_loop(rate, count, one)


def print_heartbeat_step(rate: float, count: int, seconds: float, latencies: list, errors: list) -> None:
    print(f"heartbeats offered {count} at {rate:g}/s over {seconds:.1f} s: answered {len(latencies)}"
          f" ({len(latencies) / seconds:.0f}/s), errors {len(errors)}" + (f" e.g. {errors[0]}" if errors else ""))
    print(f"   answer time:  {quantiles(latencies)}", flush=True)


def q99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(0.99 * (len(values) - 1))))] if values else float("inf")


def alert_step(bases, tokens, rate: float, duration: float, drain: float) -> dict:
    """Alerts at RATE for DURATION seconds; waits until their deliveries are done (or DRAIN)."""
    from balise.alerts.models import Alert
    from balise.dispatch.models import Delivery

    count = max(1, int(rate * duration))
    sent_at: dict[str, float] = {}
    errors: list[str] = []
    t0 = time.time()
    send_seconds = asyncio.run(send_alerts(bases, tokens, rate, count, sent_at, errors))
    deadline = time.monotonic() + drain
    alerts, rows = {}, []
    while time.monotonic() < deadline:
        alerts = dict(Alert.objects.filter(client_id__in=list(sent_at)).values_list("pk", "client_id"))
        rows = list(Delivery.objects.filter(alert_id__in=list(alerts)).values_list("id", "alert_id", "state"))
        if rows and all(state in ("sent", "failed") for _, _, state in rows) and len(alerts) + len(errors) >= count:
            break
        time.sleep(0.5)
    created = {pk: ts.timestamp() for pk, ts in Alert.objects.filter(pk__in=list(alerts)).values_list("pk", "created_at")}
    return {"rate": rate, "count": count, "t0": t0, "send_seconds": send_seconds, "sent_at": sent_at, "errors": errors,
            "alerts": alerts, "expected": {str(d): a for d, a, _ in rows}, "created": created}


def alert_figures(step: dict, arrivals: list[tuple[float, str]]) -> dict:
    expected, created, alerts, sent_at = step["expected"], step["created"], step["alerts"], step["sent_at"]
    first_at: dict[str, float] = {}
    duplicates = 0
    for at, key in arrivals:
        if key in expected:
            if key in first_at:
                duplicates += 1
            first_at.setdefault(key, at)
    server_lat, client_lat = [], []
    last_arrival = step["t0"]
    for key, at in first_at.items():
        alert_id = expected[key]
        server_lat.append(at - created[alert_id])
        client_lat.append(at - sent_at[str(alerts[alert_id])])
        last_arrival = max(last_arrival, at)
    delivered_alerts = len({expected[k] for k in first_at})
    return {"first_at": first_at, "duplicates": duplicates, "server_lat": server_lat, "client_lat": client_lat,
            "delivered_alerts": delivered_alerts, "missing": len(expected) - len(first_at),
            "span": max(1e-9, last_arrival - step["t0"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("alerts", "heartbeats"), default="alerts",
                        help="alerts (to the sink) or heartbeats (answer times)")
    parser.add_argument("--rate", type=float, default=20, help="alerts (or heartbeats) per second")
    parser.add_argument("--ramp", default="",
                        help="rates to try one after the other, e.g. 20,50,100,200: prints the highest rate held"
                             f" with p99 <= {RAMP_P99_MS:g} ms (alerts: receipt to sink; heartbeats: "
                             f"{HEARTBEAT_P99_MS:g} ms, answer time), everything delivered and no request error")
    parser.add_argument("--duration", type=float, default=10, help="seconds of sending (bounded to 120), per step")
    parser.add_argument("--devices", type=int, default=500, help="people, five contacts each")
    parser.add_argument("--servers", type=int, default=1, help="`balise serve` processes (the first runs a dispatcher)")
    parser.add_argument("--workers", type=int, default=1, help="`balise serve --workers N` (the first server)")
    parser.add_argument("--dispatchers", type=int, default=0, help="extra `balise dispatch` processes (PostgreSQL)")
    parser.add_argument("--no-serve-dispatcher", action="store_true", help="no dispatcher inside balise serve")
    parser.add_argument("--warmup", type=int, default=20, help="alerts sent first and left out of the figures")
    parser.add_argument("--settle", type=float, default=10, help="seconds between the warm-up and the figures")
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for the last messages")
    parser.add_argument("--keep", action="store_true", help="leave the SQLite data directory in place")
    parser.add_argument("--fresh", action="store_true",
                        help="PostgreSQL: drop and re-create the database named in DATABASE_URL first (open alerts"
                             " left by earlier runs would escalate and be audited during this one)")
    args = parser.parse_args()
    duration = min(args.duration, 120)
    try:
        rates = [float(r) for r in args.ramp.split(",") if r.strip()] if args.ramp else [args.rate]
    except ValueError:
        parser.error("--ramp: a comma-separated list of rates")
    if any(r <= 0 for r in rates):
        parser.error("rates must be positive")

    # A SIGTERM (a `timeout` around the bench) stops the servers it started, too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    data_dir, engine = setup_django("balise-bench-", fresh=args.fresh)

    closed = close_earlier_runs()
    if closed:
        print(f"(resolved {closed} alerts left open by earlier runs: their escalations are not this run's work)")
    sink_port, stop, res_r = start_sink()

    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    # Every bench device is in one association: its alert budget (1000 at once, then 500
    # an hour) would send the later alerts to the on-call line only, not to five contacts.
    env.update(BALISE_ALERT_BUDGET_ASSOCIATION="10000000/10000000", BALISE_ALERT_BUDGET_DEVICE="10000/10000")
    env.update(PYTHONPATH=str(SRC), BALISE_DATA_DIR=data_dir, BALISE_PROVIDERS="webhook",
               BALISE_WEBHOOK_URL=f"http://127.0.0.1:{sink_port}/", BALISE_LOG_LEVEL="WARNING",
               BALISE_SECRET_KEY="bench-only-secret-key")
    for name in os.environ:
        if name.startswith("BALISE_") and name not in ("BALISE_DATA_DIR",):
            env[name] = os.environ[name]  # let the caller tune the dispatcher (BALISE_DISPATCH_*)
    logs = Path(data_dir) / "bench-logs"
    logs.mkdir(exist_ok=True)
    procs, bases = [], []
    for i in range(args.servers):
        port = free_port()
        serve_args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        if i == 0 and args.workers > 1:
            serve_args += ["--workers", str(args.workers)]
        if i > 0 or args.no_serve_dispatcher:
            serve_args.append("--no-dispatcher")
        procs.append(balise(serve_args, env, logs / f"serve-{i}.log"))
        bases.append(f"http://127.0.0.1:{port}")
    for i in range(args.dispatchers):
        procs.append(balise(["dispatch"], env, logs / f"dispatch-{i}.log"))
    steps, beats = [], []
    try:
        for base, proc in zip(bases, procs):
            wait_http(f"{base}/health", proc)
        # A device per alert of a step (a press while her alert is open would join it, and
        # count as no new alert), and the warm-up's from the end of the list.
        counts = [max(1, int(rate * duration)) for rate in rates]
        needed = (sum(counts) + args.warmup) if args.mode == "alerts" else 0
        tokens = setup_people(max(args.devices, needed))
        warm_errors: list[str] = []
        if args.warmup:
            # From the last devices: a press while her alert is open would join it.
            asyncio.run(send_alerts(bases, tokens[::-1], max(args.rate, 20), args.warmup, {}, warm_errors))
        flush_database()
        # A server that just started is still loading its gazetteer (balise.tracking.places,
        # seconds of CPU on a busy machine) and importing its views: not what is measured.
        time.sleep(args.settle)
        for n, rate in enumerate(rates):
            if args.mode == "heartbeats":
                latencies: list[float] = []
                errors: list[str] = []
                count = max(1, int(rate * duration))
                seconds = asyncio.run(send_heartbeats(bases, tokens, rate, count, latencies, errors))
                beats.append((rate, count, seconds, latencies, errors))
                # Each step as soon as it ends: a ramp to rates the client cannot offer
                # takes long, and a `timeout` around it must not leave nothing printed.
                print_heartbeat_step(*beats[-1])
            else:
                first = sum(counts[:n])
                cpu, db_cpu = cpu_seconds([p.pid for p in procs]), postgres_cpu_seconds()
                steps.append(alert_step(bases, tokens[first:first + counts[n]], rate, duration, args.drain))
                steps[-1]["cpu"] = cpu_seconds([p.pid for p in procs]) - cpu
                steps[-1]["db_cpu"] = postgres_cpu_seconds() - db_cpu if engine == "postgresql" else None
    finally:
        stop.set()
        arrivals = res_r.recv() if res_r.poll(30) else []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"balise {args.mode}  engine={engine}  servers={args.servers} (workers={args.workers})"
          f"  extra dispatchers={args.dispatchers}  cpus={os.cpu_count()}  load={os.getloadavg()[0]:.2f}")
    held, ok = None, True
    for rate, count, seconds, latencies, errors in beats:
        good = not errors and q99(latencies) * 1000 <= HEARTBEAT_P99_MS
        ok &= not errors
        if good and rate > (held or 0):
            held = rate
    for step in steps:
        f = alert_figures(step, arrivals)
        complete = not step["errors"] and f["missing"] == 0 and len(step["alerts"]) == step["count"]
        good = complete and q99(f["server_lat"]) * 1000 <= RAMP_P99_MS
        ok &= complete
        if good and step["rate"] > (held or 0):
            held = step["rate"]
        print(f"offered: {step['count']} alerts at {step['rate']:g}/s over {step['send_seconds']:.1f} s,"
              f" 5 contacts each ({len(step['expected'])} messages expected)")
        print(f"accepted: {len(step['alerts'])} alerts ({len(step['alerts']) / step['send_seconds']:.1f}/s while"
              f" sending), request errors: {len(step['errors'])}" + (f" e.g. {step['errors'][0]}" if step["errors"] else ""))
        print(f"delivered: {len(f['first_at'])} messages for {f['delivered_alerts']} alerts; missing {f['missing']};"
              f" duplicates {f['duplicates']}")
        print(f"sustained: {f['delivered_alerts'] / f['span']:.1f} alerts/s fully delivered"
              f" ({len(f['first_at']) / f['span']:.0f} messages/s), first send to last arrival {f['span']:.1f} s")
        per_alert = 1000 / max(1, len(step["alerts"]))
        print(f"CPU of the Balise processes: {step['cpu'] * per_alert:.1f} ms per alert"
              + (f"; of this machine's PostgreSQL: {step['db_cpu'] * per_alert:.1f} ms" if step.get("db_cpu") is not None
                 else " (SQLite's included: it runs inside them)" if engine == "sqlite"
                 else " (the database's own not counted)"))
        print(f"latency from server receipt (alert created_at) to the sink:  {quantiles(f['server_lat'])}")
        print(f"latency from client send (upper bound) to the sink:          {quantiles(f['client_lat'])}")
    if len(rates) > 1:
        limit = HEARTBEAT_P99_MS if args.mode == "heartbeats" else RAMP_P99_MS
        print(f"ramp: highest rate held with p99 <= {limit:g} ms: " + (f"{held:g}/s" if held else "none"))
    if not args.keep and not os.environ.get("DATABASE_URL"):
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if ok else 1


def cpu_seconds(roots: list[int]) -> float:
    """CPU time (user + system) of the processes ROOTS and their descendants, from /proc:
    what the server costs per alert or heartbeat, whatever else the machine is doing."""
    ticks, parents = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])
    tree, grown = set(roots), True
    while grown:
        grown = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grown = True
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of this machine's PostgreSQL servers (every postmaster and its backends,
    exited backends included): the database's share when it runs here, as on loopback.
    Counts whatever else uses PostgreSQL meanwhile: take it on a quiet machine."""
    comm, parents, ticks = {}, {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        pid = int(stat.parent.name)
        comm[pid], parents[pid] = name, int(fields[1])
        # own time, and for a postmaster the time of the backends it has reaped
        ticks[pid] = (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    masters = [pid for pid, name in comm.items() if name == "postgres" and comm.get(parents[pid]) != "postgres"]
    backends = [pid for pid, name in comm.items() if name == "postgres" and pid not in masters]
    total = sum(sum(ticks[pid]) for pid in masters) + sum(ticks[pid][0] for pid in backends)
    return total / os.sysconf("SC_CLK_TCK")


def close_earlier_runs() -> int:
    """Resolve the alerts earlier runs left open on reused tables, with their timers and
    unsent messages: each would escalate five minutes after it was raised (calls to her
    contacts, then the on-call line) during whatever run came next, and that work was
    measured as this run's (seen: half of the dispatcher's CPU firing earlier runs'
    timers). Only the bench's own associations. Returns how many alerts it closed."""
    from django.db import transaction

    from balise.alerts.models import Alert
    from balise.dispatch.models import Delivery, EscalationTimer

    of_the_bench = {"alert__association__slug__startswith": "bench-"}
    with transaction.atomic():
        EscalationTimer.objects.filter(
            state__in=[EscalationTimer.State.PENDING, EscalationTimer.State.RUNNING], **of_the_bench,
        ).update(state=EscalationTimer.State.STALE, lease_owner="", lease_until=None)
        Delivery.objects.filter(
            state__in=[Delivery.State.PENDING, Delivery.State.SENDING], **of_the_bench,
        ).update(state=Delivery.State.CANCELLED, lease_owner="", lease_until=None)
        return Alert.objects.filter(
            state__in=[Alert.State.OPEN, Alert.State.ACKNOWLEDGED], association__slug__startswith="bench-",
        ).update(state=Alert.State.RESOLVED)


def flush_database() -> None:
    """Write out what making the people dirtied (thousands of rows, just before the figures):
    otherwise PostgreSQL's checkpoint writes them during the run, and the commits' syncs queue
    behind it (measured: p99 at 20 alerts/s from 50 to 680 ms between runs minutes apart,
    with the machine's I/O pressure at 10 %). As pgbench does before its runs."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("CHECKPOINT")
            elif connection.vendor == "sqlite":
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except DatabaseError as exc:  # (CHECKPOINT needs a superuser, or pg_checkpoint)
        print(f"(no checkpoint before the figures: {exc})".strip(), flush=True)


def setup_django(prefix: str, fresh: bool = False) -> tuple[str, str]:
    """Django on BALISE_DATA_DIR (else a new temporary directory) and DATABASE_URL (the
    PostgreSQL database created if missing, re-created with FRESH), migrated; returns
    (data directory, database engine)."""
    data_dir = os.environ.get("BALISE_DATA_DIR") or tempfile.mkdtemp(prefix=prefix)
    os.environ["BALISE_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "balise.settings")
    sys.path.insert(0, str(SRC))
    database = os.environ.get("DATABASE_URL", "")
    if database.startswith("postgres"):
        create_pg_database(database, fresh=fresh)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", interactive=False, verbosity=0)
    return data_dir, connection.vendor


def create_pg_database(url: str, fresh: bool) -> None:
    import psycopg
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    sys.exit(main())

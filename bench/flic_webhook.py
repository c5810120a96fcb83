"""Flic press to first provider request: the latency of the Flic webhook path.

Starts `balise serve` with the webhook provider pointed at a loopback sink (the harness
of bench/dispatch_latency.py: its sink process, server start-up and quantiles), registers
DEVICES Flic buttons, each handed to a person with five consenting contacts, and posts
Flic webhook requests at a fixed rate: one `{"token": <JWT>}` per press, the JWT signed
ES256 (as Flic's backend signs) or HS256, with the documented claims and the phone's
position. For every press it times the first message of its alert reaching the sink:

  server: from the alert's created_at (stored when the request reached the action);
  client: from the moment the press left the client (includes the token's verification).

    python bench/flic_webhook.py --rate 20 --duration 10              # SQLite, fresh
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_flic python bench/flic_webhook.py

Bounded: at most --duration (<= 120) seconds of sending and --drain seconds of waiting,
loopback only. The bench's alerts are closed at the end, so that a later run on the same
PostgreSQL database does not see them escalate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch_latency import (  # noqa: E402
    SRC, balise, free_port, open_loop, quantiles, setup_django, start_sink, wait_http)

HS_SECRET = "bench-only-flic-secret-of-32-bytes-or-more"


def setup_buttons(count: int, algorithm: str, public_pem: str) -> tuple[str, list[str]]:
    """COUNT Flic buttons handed to people with five consenting contacts; (slug, serials)."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from balise.associations.models import Association
    from balise.devices.models import Device
    from balise.integrations.flic.models import FlicButton, FlicSettings
    from balise.people.models import Contact, Person

    tag = uuid.uuid4().hex[:6].upper()
    serials = [f"F{tag}-{i:06d}" for i in range(count)]
    with transaction.atomic():
        association = Association.objects.create(name=f"Bench {tag}", slug=f"bench-{tag.lower()}",
                                                 on_call_number="+33472000000")
        FlicSettings.objects.create(association=association, algorithm=algorithm,
                                    public_key=public_pem if algorithm == "ES256" else "")
        cancel, duress = make_password("2468"), make_password("1357")
        people = Person.objects.bulk_create(
            Person(association=association, display_name=f"P{i}", cancel_pin_hash=cancel, duress_pin_hash=duress)
            for i in range(count))
        Contact.objects.bulk_create(
            Contact(person=p, position=j, name=f"C{j}", phone=f"+3362{i:05d}{j:02d}", consent=Contact.Consent.ACCEPTED)
            for i, p in enumerate(people) for j in range(1, 6))
        Device.objects.bulk_create(
            Device(association=association, holder=p, kind=Device.Kind.FLIC, hardware_id=s,
                   status=Device.Status.ASSIGNED) for s, p in zip(serials, people))
        FlicButton.objects.bulk_create(FlicButton(device=d) for d in Device.objects.filter(hardware_id__in=serials))
    return association.slug, serials


def close_bench_alerts(slug: str) -> None:
    from balise.alerts.models import Alert
    from balise.dispatch.models import Delivery, EscalationTimer

    alerts = Alert.objects.filter(association__slug=slug)
    EscalationTimer.objects.filter(alert__in=alerts, state="pending").update(state="stale")
    Delivery.objects.filter(alert__in=alerts, state="pending").update(state="cancelled")
    alerts.update(state="resolved")


async def press(base: str, serials: list[str], sign, rate: float, count: int, offset: int, sent: dict,
                errors: list) -> float:
    """Press i leaves at i / RATE (an open loop), from button OFFSET + i."""
    import httpx

    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            serial = serials[(offset + i) % len(serials)]
            now = datetime.now(timezone.utc)
            claims = {"exp": int(time.time()) + 300, "buttonUuid": uuid.uuid4().hex, "buttonSerialNumber": serial,
                      "buttonName": serial, "buttonBatteryStatus": "high", "pressedAt": now.isoformat(),
                      "clickType": "click", "latitude": 45.764, "longitude": 4.8357, "accuracy": 15}
            body = json.dumps({"token": sign(claims)})
            sent[(serial, now.isoformat())] = time.time()
            try:
                r = await client.post(f"{base}/integrations/flic/", content=body,
                                      headers={"Content-Type": "application/json"})
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)

        return await open_loop(rate, count, one)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20, help="presses per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds of pressing (bounded to 120)")
    parser.add_argument("--devices", type=int, default=500, help="Flic buttons, one person and five contacts each")
    parser.add_argument("--algorithm", choices=("ES256", "HS256"), default="ES256")
    parser.add_argument("--warmup", type=int, default=20, help="presses sent first and left out of the figures")
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for the last messages")
    args = parser.parse_args()
    duration = min(args.duration, 120)
    count = max(1, int(args.rate * duration))

    data_dir, engine = setup_django("balise-flic-bench-")
    database = os.environ.get("DATABASE_URL", "")
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    if args.algorithm == "ES256":
        def sign(claims):
            return jwt.encode(claims, key, algorithm="ES256")
    else:
        def sign(claims):
            return jwt.encode(claims, HS_SECRET, algorithm="HS256")

    sink_port, stop, res_r = start_sink()
    slug, serials = setup_buttons(args.devices, args.algorithm, public_pem)

    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    # Every bench device is in one association: its alert budget (1000 at once, then 500
    # an hour) would send the later alerts to the on-call line only, not to five contacts.
    env.update(BALISE_ALERT_BUDGET_ASSOCIATION="10000000/10000000", BALISE_ALERT_BUDGET_DEVICE="10000/10000")
    env.update(PYTHONPATH=str(SRC), BALISE_DATA_DIR=data_dir, BALISE_PROVIDERS="webhook",
               BALISE_WEBHOOK_URL=f"http://127.0.0.1:{sink_port}/", BALISE_LOG_LEVEL="WARNING",
               BALISE_SECRET_KEY="bench-only-secret-key")
    env["BALISE_FLIC_SECRET_" + slug.upper().replace("-", "_")] = HS_SECRET
    logs = Path(data_dir) / "bench-logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    proc = balise(["serve", "--host", "127.0.0.1", "--port", str(port)], env, logs / "serve.log")
    base = f"http://127.0.0.1:{port}"
    from balise.alerts.models import Alert
    from balise.dispatch.models import Delivery

    try:
        wait_http(f"{base}/health", proc)
        errors: list[str] = []
        if args.warmup:
            asyncio.run(press(base, serials, sign, max(args.rate, 20), args.warmup, count, {}, errors))
            time.sleep(2)
        errors.clear()
        sent: dict[tuple[str, str], float] = {}
        t0 = time.time()
        send_seconds = asyncio.run(press(base, serials, sign, args.rate, count, 0, sent, errors))
        deadline = time.monotonic() + args.drain
        rows, alerts = [], {}
        while time.monotonic() < deadline:
            alerts = {pk: (serial, created.timestamp(), triggered) for pk, serial, created, triggered in
                      Alert.objects.filter(association__slug=slug, created_at__gte=datetime.fromtimestamp(
                          t0, timezone.utc)).values_list("pk", "device__hardware_id", "created_at", "triggered_at")}
            rows = list(Delivery.objects.filter(alert_id__in=list(alerts)).values_list("id", "alert_id", "state"))
            if rows and all(s in ("sent", "failed") for _, _, s in rows) and len(alerts) + len(errors) >= count:
                break
            time.sleep(0.5)
        expected = {str(d): a for d, a, _ in rows}
    finally:
        stop.set()
        arrivals = res_r.recv() if res_r.poll(30) else []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        close_bench_alerts(slug)

    first: dict[int, float] = {}
    for at, delivery in arrivals:
        alert_id = expected.get(delivery)
        if alert_id is not None:
            first[alert_id] = min(at, first.get(alert_id, at))
    server_lat, client_lat = [], []
    for alert_id, at in first.items():
        serial, created, triggered = alerts[alert_id]
        server_lat.append(at - created)
        client_lat.append(at - sent[(serial, triggered.isoformat())])
    missing = len(alerts) - len(first)
    print(f"balise flic webhook  engine={engine}  algorithm={args.algorithm}  cpus={os.cpu_count()}")
    print(f"offered: {count} presses at {args.rate:g}/s over {send_seconds:.1f} s, {args.devices} buttons,"
          f" 5 contacts each")
    print(f"accepted: {len(alerts)} alerts, request errors: {len(errors)}" + (f" e.g. {errors[0]}" if errors else ""))
    print(f"first provider request reached for {len(first)} alerts; missing {missing}")
    print(f"press received (created_at) -> first provider request:  {quantiles(server_lat)}")
    print(f"press sent by the client    -> first provider request:  {quantiles(client_lat)}")
    if not database:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if missing == 0 and not errors and len(alerts) == count else 1


if __name__ == "__main__":
    sys.exit(main())

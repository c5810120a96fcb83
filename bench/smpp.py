"""SMPP throughput and alert-to-submit_sm latency, against Jasmin (the real SMSC the tests
use: tests/providers/smsc/jasmin.py, started on free loopback ports on this machine's
RabbitMQ and Redis; the network behind it answers every message with a DELIVRD receipt
0.3 s later).

1. Throughput: the SMPP provider alone, MESSAGES messages from WORKERS threads (as the
   dispatcher's pool sends them); messages per second = MESSAGES / (first submit_sm to
   the last receipt matched to its message), and the same for submit_sm_resp alone.
2. Latency: Django in this process (SQLite in a temporary directory, or DATABASE_URL),
   a dispatcher running with the smpp provider, prevention alerts (an SMS to each of
   CONTACTS contacts) raised at RATE alerts per second for DURATION seconds; for every
   SMS, the time from the alert's created_at to its submit_sm being written to the
   session. p50, p99, max.

    python bench/smpp.py                      # 2000 messages; 20 alerts/s for 10 s
    python bench/smpp.py --messages 500 --rate 20 --duration 5 --contacts 2

Bounded: loopback only, --drain seconds of waiting at most.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def throughput(smsc, messages: int, workers: int, window: int) -> None:
    from balise.providers.base import OutgoingMessage
    from balise.providers.smpp import SmppProvider
    from tests.providers.smsc.jasmin import NUMBER, PASSWORD, SYSTEM_ID

    matched, lock, done = set(), threading.Lock(), threading.Event()
    last = [0.0]

    def on_receipt(event):
        with lock:
            if event.key is not None:
                matched.add(event.key)
                last[0] = time.monotonic()
                if len(matched) == messages:
                    done.set()

    provider = SmppProvider("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, source_addr=NUMBER, window=window,
                            timeout=30.0, on_receipt=on_receipt)
    try:
        provider.bound.wait(30)
        texts = [OutgoingMessage(key=f"bench-{i}", channel="sms", to=f"+3361{i:06d}1",
                                 text=f"BALISE: Camille se sent en danger, message {i}. Répondez OK.", language="fr",
                                 alert_id=0, alert_kind="prevention", purpose="alert") for i in range(messages)]
        start = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(provider.send, texts))
        submitted = time.monotonic()
        done.wait(120)
        print(f"throughput: {messages} messages, {workers} senders, window {window}", flush=True)
        print(f"  submit_sm answered: {messages / (submitted - start):.1f} msg/s ({submitted - start:.2f} s)")
        print(f"  receipts matched:   {len(matched)}/{messages}, {len(matched) / (last[0] - start):.1f} msg/s "
              f"({last[0] - start:.2f} s from the first submit_sm to the last receipt)")
    finally:
        provider.close()


def latency(smsc, rate: float, duration: float, contacts: int, drain: float) -> None:
    data = tempfile.mkdtemp(prefix="balise-bench-smpp-")
    os.environ.setdefault("BALISE_DATA_DIR", data)
    os.environ.setdefault("BALISE_SECRET_KEY", "bench-only-secret-key-not-for-production")
    os.environ["DJANGO_SETTINGS_MODULE"] = "balise.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from balise.dispatch.dispatcher import Dispatcher, run_in_thread
    from balise.dispatch.models import Delivery
    from balise.providers.health import Guarded
    from balise.providers import smpp as smpp_module
    from balise.providers.smpp import SmppProvider
    from tests.contacts.helpers import raise_alert
    from tests.personas import another_holder, make_world
    from tests.providers.smsc.jasmin import NUMBER, PASSWORD, SYSTEM_ID

    call_command("migrate", verbosity=0)
    settings.PROVIDERS = ["smpp"]
    # (the people of the bench are made as in the tests: their PINs hashed cheaply; the
    # alerts themselves do not check PINs)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    class Timed(SmppProvider):
        """Notes which message each sending thread is on (see written)."""

        local = threading.local()
        first: dict[str, float] = {}

        def send(self, message):
            self.local.key = message.key
            return super().send(message)

    def written(send_pdu):
        # submit_sm is written on the sending thread, once the window admits it: the time
        # it goes out, not the time it started waiting for the window.
        def timed(client, pdu):
            if pdu.command == "submit_sm" and getattr(Timed.local, "key", None) is not None:
                Timed.first.setdefault(Timed.local.key, time.time())
            return send_pdu(client, pdu)
        return timed

    smpp_module._Client.send_pdu = written(smpp_module._Client.send_pdu)

    count = int(rate * duration)
    prepared = time.monotonic()
    world = make_world(slug=f"bench{int(time.time())}", contacts=contacts)
    devices = [world.device] + [another_holder(world, f"b{i}")[1] for i in range(count - 1)]
    print(f"latency: {count} people with {contacts} contacts made in {time.monotonic() - prepared:.1f} s", flush=True)
    provider = Timed("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, source_addr=NUMBER, timeout=30.0,
                     on_receipt=lambda event: None)
    provider.bound.wait(30)
    dispatcher = Dispatcher(name="bench-smpp", providers=[Guarded(provider)])
    thread = run_in_thread(dispatcher)
    alerts = []
    try:
        start = time.monotonic()
        for i, device in enumerate(devices):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # (the pace of the alerts)
            alerts.append(raise_alert(world, "prevention", device=device))
        behind = time.monotonic() - start - (count - 1) / rate
        expected = count * contacts
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and len(Timed.first) < expected:
            time.sleep(0.1)
    finally:
        dispatcher.stop()
        thread.join(30)
    created = {str(d.pk): d.alert.created_at.timestamp()
               for d in Delivery.objects.filter(alert__in=alerts, channel="sms").select_related("alert")}
    delays = [(Timed.first[k] - t) * 1000 for k, t in created.items() if k in Timed.first]
    print(f"latency: {count} prevention alerts at {rate:g}/s ({contacts} SMS each; the pace slipped by "
          f"{max(behind, 0):.2f} s), {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    print(f"  alert -> submit_sm: {len(delays)}/{len(created)} SMS, p50 {percentile(delays, 50):.0f} ms, "
          f"p99 {percentile(delays, 99):.0f} ms, max {max(delays):.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16, help="threads sending (the dispatcher's pool)")
    parser.add_argument("--window", type=int, default=10, help="submit_sm unanswered at a time")
    parser.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--contacts", type=int, default=2)
    parser.add_argument("--drain", type=float, default=60.0)
    args = parser.parse_args()

    import signal

    from tests.providers.smsc.jasmin import JasminSMSC

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # (Jasmin is stopped on the way out)
    smsc = JasminSMSC().start()
    try:
        throughput(smsc, args.messages, args.workers, args.window)
        latency(smsc, args.rate, args.duration, args.contacts, args.drain)
    finally:
        smsc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

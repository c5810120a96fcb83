"""Real peers on loopback for the spine's fault tests: a webhook sink that records every
request and answers as a script says (OK, an HTTP error, slowly, never until released,
or not at all), and `balise serve` / `balise dispatch` subprocesses that share the
test's database.

Waiting here is always "until something happens, or give up after a generous bound":
no test asserts on how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

import httpx

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition", interval: float = 0.02):
    """Poll PREDICATE until it returns something truthy; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(interval)


# -- the webhook sink -------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0  # seconds to wait before answering
    hold: bool = False  # wait until Sink.release() before answering
    drop: bool = False  # close the connection without answering


OK = Reply()


@dataclass
class Hit:
    n: int  # 0-based arrival order at this sink
    key: str  # the Idempotency-Key header
    body: dict
    reply: Reply
    answered: bool = False  # the answer was written (the client may have gone by then)
    raw: bytes = b""  # the body as it came
    headers: dict = field(default_factory=dict)


@dataclass
class Sink:
    """A webhook receiver on 127.0.0.1. SCRIPT(n, key, body) picks the reply to the n-th
    request; it can be replaced at any time."""

    script: Callable[[int, str, dict], Reply] = lambda n, key, body: OK
    port: int = 0
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self):
        self.lock = threading.Condition()
        self.released = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsable": raw.decode("latin-1")}
                key = self.headers.get("Idempotency-Key", "")
                with sink.lock:
                    n = len(sink.hits)
                    reply = sink.script(n, key, body)
                    hit = Hit(n, key, body, reply, raw=raw, headers=dict(self.headers.items()))
                    sink.hits.append(hit)
                    sink.lock.notify_all()
                if reply.hold:
                    sink.released.wait(120)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = json.dumps({"id": f"sink-{sink.port}-{n}"}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    hit.answered = True
                except OSError:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                pass  # a client that went away (killed dispatcher, timeout) is expected here

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def keys(self) -> list[str]:
        return [h.key for h in self.snapshot()]

    def wait_for_hits(self, count: int, timeout: float = 30.0, where=lambda hit: True) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                matching = [h for h in self.hits if where(h)]
                if len(matching) >= count:
                    return matching
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"sink saw {len(matching)} of {count} expected requests")
                self.lock.wait(left)


# -- balise subprocesses ----------------------------------------------------------------


def database_url() -> str:
    """DATABASE_URL for the database this test runs on (the test database, not the
    configured one), with the same connection options."""
    from django.db import connection

    s = connection.settings_dict
    options = {k: v for k, v in (s.get("OPTIONS") or {}).items() if isinstance(v, (str, int, float))}
    query = ("?" + urlencode(options)) if options else ""
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}{query}"
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s["HOST"] or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}{query}"


def balise_env(**overrides: object) -> dict[str, str]:
    from django.conf import settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_") and k != "DATABASE_URL"}
    env.update(
        PYTHONPATH=str(SRC),
        DJANGO_SETTINGS_MODULE="balise.settings",
        DATABASE_URL=database_url(),
        BALISE_DATA_DIR=str(settings.DATA_DIR),
        BALISE_SECRET_KEY=settings.SECRET_KEY,
        BALISE_LOG_LEVEL="WARNING",
        BALISE_DISPATCH_POLL_SECONDS="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class BaliseProcess:
    """`python -m balise ARGS` with this worktree's code, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "balise", *args], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"balise {' '.join(self.args)} exited with {self.proc.returncode}:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as in a crash or an OOM kill."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


class Dispatch(BaliseProcess):
    def wait_ready(self, timeout: float = 30.0) -> str:
        """Until the dispatcher has run its first tick (it writes its heartbeat row then)."""
        from balise.dispatch.models import DispatcherBeat

        def started():
            self.check_alive()
            for line in self.output().splitlines():
                if line.startswith("balise dispatch: ") and line.endswith(" started"):
                    return line[len("balise dispatch: "):-len(" started")]
            return None

        name = wait_until(started, timeout, "the dispatcher to start")
        wait_until(lambda: self.check_alive() or DispatcherBeat.objects.filter(name=name).exists(), timeout,
                   "the dispatcher's first heartbeat")
        self.name = name
        return name


class Serve(BaliseProcess):
    def __init__(self, args, env, log_path, port: int):
        super().__init__(args, env, log_path)
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        def answering():
            self.check_alive()
            try:
                return httpx.get(f"{self.base}/api/v1/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answering, timeout, f"balise serve on port {self.port}", interval=0.1)


class Processes:
    """Starts balise processes for one test and always stops them before its database is
    flushed."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[BaliseProcess] = []

    def _log(self, label: str) -> Path:
        return self.tmp_path / f"{label}-{len(self.started)}.log"

    def dispatch(self, *, wait: bool = True, workers: int | None = None, **env: object) -> Dispatch:
        args = ["dispatch"] + ([f"--workers={workers}"] if workers else [])
        proc = Dispatch(args, balise_env(**env), self._log("dispatch"))
        self.started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    def serve(self, *, dispatcher: bool = False, wait: bool = True, **env: object) -> Serve:
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port)] + ([] if dispatcher else ["--no-dispatcher"])
        proc = Serve(args, balise_env(**env), self._log("serve"), port)
        self.started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()

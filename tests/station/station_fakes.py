"""Real protocol peers on loopback for the station tests: a device API server, a gpsd."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "test-device-token-0123456789"


class FakeDeviceApi:
    """A small HTTP server on loopback that follows docs/device-api.md.

    ``stop()`` closes the listening socket (connection refused, like a server
    that is down); ``start()`` opens it again on the same port. ``fail`` maps a
    path prefix to a list of statuses returned before the real handling.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alerts: dict[str, dict[str, Any]] = {}
        self.fixes: dict[str, dict[str, dict[str, Any]]] = {}
        self.heartbeats: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.fail: dict[str, list[int]] = {}
        self.delay_s = 0.0
        self.closed: set[str] = set()
        self.tokens = {TOKEN}  # accepted device tokens
        self.pair_codes: dict[str, Any] = {}  # code -> token it gives, or "expired"
        self.contacts = {
            "person": {"display_name": "Camille", "language": "fr"},
            "association": {"name": "France Victimes 69", "on_call_number": "+33472000000"},
            "contacts": [
                {"id": 3, "position": 1, "name": "Alex", "phone": "+33612345678", "language": "fr",
                 "consent": "accepted"},
                {"id": 4, "position": 2, "name": "Sam", "phone": "+447700900123", "language": "en",
                 "consent": "accepted"},
                {"id": 5, "position": 3, "name": "Lou", "phone": "+33698765432", "language": "fr",
                 "consent": "pending"},
            ],
        }
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, reply = api.handle(method, self.path, self.headers.get("Authorization"), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body))
            for prefix, statuses in self.fail.items():
                if path.startswith(prefix) and statuses:
                    return statuses.pop(0), {"error": "injected", "message": "injected failure"}
        if self.delay_s:
            time.sleep(self.delay_s)
        if method == "POST" and path == "/api/v1/pair":  # the code is the credential
            with self.lock:
                given = self.pair_codes.pop(body.get("code"), None)
            if given is None:
                return 400, {"error": "invalid_code", "message": "unknown or already used pairing code"}
            if given == "expired":
                return 410, {"error": "expired_code", "message": "this pairing code has expired; ask for a new one"}
            self.tokens = {given}  # pairing again revokes the previous token
            return 200, {"token": given, "device": "station-1", "kind": "station"}
        if auth is None or not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {"error": "unauthorized", "message": "bad token"}
        with self.lock:
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:2] != ["api", "v1"]:
            return 404, {"error": "not_found"}
        rest = parts[2:]
        if method == "POST" and rest == ["alerts"]:
            cid = body["client_id"]
            if cid in self.alerts:
                return 200, self._alert_reply(cid)
            if body["kind"] not in ("prevention", "emergency", "alarm", "test"):
                return 422, {"error": "validation", "fields": [{"field": "kind"}]}
            # like the real server: times before 2020 are refused (a board without a clock)
            if (body.get("triggered_at") or "2026") < "2020" or any(f["recorded_at"] < "2020" for f in body["fixes"]):
                return 422, {"error": "validation", "fields": [{"field": "triggered_at"}]}
            self.alerts[cid] = dict(body, id=len(self.alerts) + 1, state="open")
            self.fixes[cid] = {f["id"]: f for f in body.get("fixes", [])}
            return 201, self._alert_reply(cid)
        if len(rest) >= 2 and rest[0] == "alerts":
            cid = rest[1]
            if cid not in self.alerts:
                return 404, {"error": "not_found"}
            if method == "POST" and rest[2:] == ["fixes"]:
                if cid in self.closed:
                    return 409, {"error": "alert_closed"}
                new = [f for f in body["fixes"] if f["id"] not in self.fixes[cid]]
                for f in new:
                    self.fixes[cid][f["id"]] = f
                return 200, {"accepted": len(new), "duplicates": len(body["fixes"]) - len(new)}
            if method == "GET" and rest[2:] == []:
                a = self.alerts[cid]
                return 200, {"client_id": cid, "kind": a["kind"], "state": a["state"], "acknowledged": False,
                             "created_at": "2026-01-01T00:00:00Z", "fixes": len(self.fixes[cid])}
        if method == "POST" and rest == ["heartbeat"]:
            self.heartbeats.append(body)
            open_alerts = [{"client_id": cid, "kind": a["kind"], "state": a["state"]}
                           for cid, a in self.alerts.items() if cid not in self.closed]
            return 200, {"server_time": "2026-01-01T00:00:00Z", "heartbeat_interval_s": 300,
                         "open_alerts": open_alerts}
        if method == "GET" and rest == ["contacts"]:
            return 200, self.contacts
        return 404, {"error": "not_found"}

    def _alert_reply(self, cid: str) -> dict[str, Any]:
        a = self.alerts[cid]
        return {"id": a["id"], "client_id": cid, "kind": a["kind"], "state": a["state"],
                "created_at": "2026-01-01T00:00:00Z", "fixes": len(self.fixes[cid])}

    def posts(self, prefix: str) -> list[Any]:
        with self.lock:
            return [b for m, p, b in self.requests if m == "POST" and p.startswith(prefix)]


class FakeGpsd:
    """Speaks gpsd's JSON protocol on a loopback TCP port: VERSION, then TPV reports after ?WATCH."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.reports: list[dict[str, Any]] = []
        self.interval_s = 0.05
        self.watch_requests: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def tpv(self, lat: float, lon: float, eph: float = 5.0, mode: int = 3) -> dict[str, Any]:
        return {"class": "TPV", "device": "/dev/ttyACM0", "mode": mode, "time": _now_iso(),
                "lat": lat, "lon": lon, "alt": 35.0, "eph": eph, "epx": eph / 1.4, "epy": eph / 1.4}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b'{"class":"VERSION","release":"3.25","rev":"3.25","proto_major":3,"proto_minor":15}\n')
                line = conn.makefile("rb").readline()
                self.watch_requests.append(line.decode())
                if not line.startswith(b"?WATCH="):
                    return
                conn.sendall(b'{"class":"DEVICES","devices":[{"class":"DEVICE","path":"/dev/ttyACM0"}]}\n')
                conn.sendall(b'{"class":"WATCH","enable":true,"json":true}\n')
                conn.sendall(b"garbage that is not json\n")
                i = 0
                while not self._stop.is_set():
                    if self.reports:
                        report = dict(self.reports[i % len(self.reports)], time=_now_iso())
                        conn.sendall(json.dumps(report).encode() + b"\n")
                        conn.sendall(b'{"class":"SKY","satellites":[]}\n')
                        i += 1
                    time.sleep(self.interval_s)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def tap(station, button: str = "sim", presses: int = 1, hold: float = 0.08, gap: float = 0.1) -> None:
    """Presses BUTTON PRESSES times with edge times fixed in advance on the decoder's clock:
    a busy machine that wakes the test late cannot stretch a tap into a hold or split a
    double press into two singles. A press-only button gets its presses, no releases."""
    from balise_station.gestures import Edge

    t = station.clock()
    for _ in range(presses):
        station.button_edge(button, Edge.PRESS, t)
        if button != "tag":
            station.button_edge(button, Edge.RELEASE, t + hold)
        t += hold + gap


async def wait_for(pred, timeout: float = 60.0, step: float = 0.01) -> None:
    """Waits on the running loop until ``pred()`` is true; fails the test after ``timeout``."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(step)

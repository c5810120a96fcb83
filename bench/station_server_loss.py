"""How long the station takes to notice that its server is gone, with the default settings
(server.check_interval_s = 5, server.check_timeout_s = 3; the issue asks for 10 s at most).

Two ways of being gone, each measured RUNS times on loopback: the server stops (connection
refused) and the server hangs (accepts, never answers: the harder case). Run:
    PYTHONPATH=src python bench/station_server_loss.py [RUNS]
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from balise_station.config import parse_config
from balise_station.station import Station

CONTACTS = {"person": {"display_name": "X", "language": "fr"},
            "association": {"name": "A", "on_call_number": "+33100000000"}, "contacts": []}


class Api:
    def __init__(self) -> None:
        self.hang = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self) -> None:
                if api.hang.is_set():
                    api.hang.wait(30)
                    time.sleep(30)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = CONTACTS if self.path.endswith("/contacts") else {
                    "server_time": "2026-01-01T00:00:00Z", "heartbeat_interval_s": 300, "open_alerts": []}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def once(way: str, state_dir: Path) -> float:
    api = Api()
    cfg = parse_config({"server": {"url": f"http://127.0.0.1:{api.port}", "token": "t"},
                        "station": {"state_dir": str(state_dir)}, "evidence": {"microphone": "none"},
                        "siren": {"output": "none"}})
    station = Station(cfg)
    await station.start()
    try:
        while station.sender.server_reachable is not True:
            await asyncio.sleep(0.05)
        await asyncio.sleep(random.uniform(0, cfg.server.check_interval_s))  # at any point of the check cycle
        t0 = time.monotonic()
        if way == "stops":
            api.stop()
        else:
            api.hang.set()
        while station.sender.server_reachable is not False:
            await asyncio.sleep(0.01)
        return time.monotonic() - t0
    finally:
        await station.close()
        if way != "stops":
            api.stop()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for way in ("stops", "hangs"):
        got = []
        for i in range(runs):
            with tempfile.TemporaryDirectory() as d:
                got.append(asyncio.run(once(way, Path(d))))
        print(f"server {way}: noticed after median {statistics.median(got):.2f} s, max {max(got):.2f} s "
              f"({runs} runs; bound 10 s)")


if __name__ == "__main__":
    main()

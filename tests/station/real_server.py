"""A real `balise serve` in a subprocess, for the station's end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
DEMO_PHONES = {"+33612345601", "+33612345602", "+447911123456"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.proc: subprocess.Popen | None = None
        self.token = ""

    def start(self, demo: bool) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BALISE_SITE_URL")}
        env.update(PYTHONPATH=SRC, BALISE_DATA_DIR=str(self.data_dir), DJANGO_SETTINGS_MODULE="balise.settings")
        args = [sys.executable, "-m", "balise", "serve", "--port", str(self.port)] + (["--demo"] if demo else [])
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        # A bound, not a wait: a first start migrates and builds its data (13 s at load 5 here;
        # over 60 s beside a CPU burner and the rest of the suite at load 9).
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"Jeton du bouton virtuel : (\S+)", line):
                self.token = m.group(1)
            if "Balise écoute sur" in line:
                threading_drain(self.proc)
                return
        self.stop()
        raise AssertionError(f"server did not start (exit {self.proc.poll()}):\n" + "".join(lines))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=90)
            self.proc = None

    def outbox(self) -> list[dict]:
        path = self.data_dir / "console-outbox.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def threading_drain(proc: subprocess.Popen) -> None:
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

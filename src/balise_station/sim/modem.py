"""The GSM modem's simulated twin: answers AT commands on a pseudo-terminal.

It speaks like a real modem (echo on until ATE0, ``> `` prompt for the SMS
text, ``+CMGS: <ref>`` then ``OK``, ``+CMS ERROR: <n>`` on failure) and
records what it would have sent. Faults can be injected to test the station:
a number the network refuses, a missing SIM, a modem that stops answering.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SimulatedModem:
    outbox_path: Path | None = None  # JSON lines of what it "sent", for people trying the station
    refuse_numbers: dict[str, int] = field(default_factory=dict)  # number -> +CMS ERROR code
    fail_next_sends: int = 0
    no_sim: bool = False
    silent: bool = False
    sent: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._echo = True
        self._cmgf_text = False
        self._pending_number: str | None = None
        self._text = b""
        self._line = b""
        self._ref = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="simulated-modem", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SimulatedModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the modem ------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 1024)
            except OSError:
                time.sleep(0.05)
                continue
            for byte in data:
                self._byte(bytes([byte]))

    def _send(self, data: bytes) -> None:
        os.write(self._master, data)

    def _byte(self, b: bytes) -> None:
        if self._pending_number is not None:  # typing the SMS text after the prompt
            if b == b"\x1a":
                self._finish_sms()
            elif b == b"\x1b":
                self._pending_number, self._text = None, b""
                self._reply("OK")
            else:
                if self._echo:
                    self._send(b)
                self._text += b
            return
        if self.silent:
            return
        if self._echo:
            self._send(b)
        if b == b"\r":
            line, self._line = self._line.decode("ascii", "replace").strip(), b""
            if line:
                self._command(line)
        elif b != b"\n":
            self._line += b

    def _reply(self, *lines: str) -> None:
        self._send(b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))

    def _command(self, line: str) -> None:
        with self._lock:
            self.commands.append(line)
        up = line.upper()
        if up in ("AT", "AT+CMEE=1", 'AT+CSCS="GSM"'):
            self._reply("OK")
        elif up in ("ATE0", "ATE1"):
            self._echo = up == "ATE1"
            self._reply("OK")
        elif up == "AT+CMGF=1":
            self._cmgf_text = True
            self._reply("OK")
        elif up == "AT+CSQ":
            self._reply("+CSQ: 18,99", "OK")
        elif up.startswith("AT+CMGS="):
            if self.no_sim:
                self._reply("+CME ERROR: 10")
            elif not self._cmgf_text:
                self._reply("+CMS ERROR: 302")
            else:
                self._pending_number = line.split("=", 1)[1].strip('"')
                self._text = b""
                self._send(b"\r\n> ")
        else:
            self._reply("ERROR")

    def _finish_sms(self) -> None:
        number, text = self._pending_number or "", self._text.decode("ascii", "replace")
        self._pending_number, self._text = None, b""
        if self.fail_next_sends > 0:
            self.fail_next_sends -= 1
            self._reply("+CMS ERROR: 500")
            return
        if number in self.refuse_numbers:
            self._reply(f"+CMS ERROR: {self.refuse_numbers[number]}")
            return
        self._ref = (self._ref + 1) % 256
        with self._lock:
            self.sent.append((number, text))
        if self.outbox_path is not None:
            with open(self.outbox_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"to": number, "text": text, "at": time.time()}) + "\n")
        self._reply(f"+CMGS: {self._ref}", "OK")

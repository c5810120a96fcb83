"""GSM modem: SMS in text mode with AT commands over a serial line (pyserial).

The calls block (serial I/O); the station runs them in a worker thread.
Numbers and texts are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import serial

from balise_station.i18n import _

log = logging.getLogger(__name__)

CTRL_Z = b"\x1a"
ESC = b"\x1b"
_FINAL_ERROR = re.compile(rb"^(ERROR|\+CMS ERROR:.*|\+CME ERROR:.*|NO CARRIER)$")
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
SMS_MAX = 160


class ModemError(Exception):
    """The modem refused or did not answer; ``code`` is its error text (e.g. '+CMS ERROR: 500')."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def gsm_text(text: str) -> str:
    """Text safe for a GSM-7 text-mode SMS on any modem: plain ASCII, at most 160 characters."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    plain = "".join(c for c in plain if c.isprintable() and c not in "@$_[]{}\\^~|`")
    return plain[:SMS_MAX]


class GsmModem:
    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 10.0,
                 serial_factory: Callable[..., Any] = serial.Serial) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._factory = serial_factory
        self._ser: Any = None
        self._buf = b""

    # -- connection -----------------------------------------------------------
    def open(self) -> None:
        try:
            self._ser = self._factory(self.port, self.baudrate, timeout=0.05, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"cannot open modem port: {exc}") from None
        self._buf = b""
        for attempt in range(3):  # the modem may be waking up or still in a half-typed command
            try:
                self.command("AT", timeout_s=min(2.0, self.timeout_s))
                break
            except ModemError:
                if attempt == 2:
                    raise
                self._write(ESC + b"\r")
                time.sleep(0.2)
        self.command("ATE0")  # no echo
        self.command("AT+CMEE=1")  # numeric errors
        self.command("AT+CMGF=1")  # text mode
        self.command('AT+CSCS="GSM"')

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> GsmModem:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------
    def command(self, cmd: str, timeout_s: float | None = None) -> list[str]:
        """Sends one command; returns the lines before OK; raises ModemError on an error reply."""
        self._write(cmd.encode("ascii") + b"\r")
        return self._until_final(cmd, timeout_s or self.timeout_s)

    def send_sms(self, number: str, text: str) -> int:
        """Sends one SMS; returns the message reference given by the network."""
        if not _NUMBER.match(number):
            raise ModemError("not a phone number")
        self._write(f'AT+CMGS="{number}"\r'.encode("ascii"))
        self._until_prompt()
        self._write(gsm_text(text).encode("ascii") + CTRL_Z)
        lines = self._until_final("AT+CMGS", max(self.timeout_s, 30.0))  # the network may take a while
        for line in lines:
            if line.startswith("+CMGS:"):
                return int(line.split(":", 1)[1].strip() or 0)
        raise ModemError("no message reference in the modem's reply")

    def signal_quality(self) -> int | None:
        """RSSI as reported by AT+CSQ (0-31, None when unknown)."""
        for line in self.command("AT+CSQ"):
            if line.startswith("+CSQ:"):
                rssi = int(line.split(":")[1].split(",")[0])
                return None if rssi == 99 else rssi
        return None

    # -- I/O ------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise ModemError("modem is not open")
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"modem write failed: {exc}") from None

    def _read_some(self) -> bytes:
        try:
            return self._ser.read(max(1, self._ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"modem read failed: {exc}") from None

    def _lines(self, deadline: float, what: str) -> Any:
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                line = line.strip(b"\r ")
                if line:
                    yield line
            if time.monotonic() > deadline:
                raise ModemError(f"modem did not answer {what}", "timeout")
            self._buf += self._read_some()

    def _until_final(self, what: str, timeout_s: float) -> list[str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout_s
        for line in self._lines(deadline, what):
            if line == b"OK":
                return out
            if _FINAL_ERROR.match(line):
                code = line.decode("ascii", "replace")
                raise ModemError(f"modem refused {what.split('=')[0]}: {code}", code)
            text = line.decode("ascii", "replace")
            if text != what:  # an echo of the command, before ATE0 took effect
                out.append(text)

    def _until_prompt(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while b">" not in self._buf:
            for line in self._buf.split(b"\n"):
                line = line.strip(b"\r ")
                if _FINAL_ERROR.match(line):
                    self._buf = b""
                    code = line.decode("ascii", "replace")
                    raise ModemError(f"modem refused AT+CMGS: {code}", code)
            if time.monotonic() > deadline:
                self._write(ESC)
                raise ModemError("modem gave no SMS prompt", "timeout")
            self._buf += self._read_some()
        self._buf = self._buf.split(b">", 1)[1]


def probe(port: str, baudrate: int = 115200, timeout_s: float = 2.0,
          serial_factory: Callable[..., Any] = serial.Serial) -> tuple[str, str]:
    """A real health check: opens the port, sends "AT", waits for "OK" (at most ``timeout_s``).
    Returns ("ok", "") or ("unusable", why). Blocking: run it in a thread."""
    modem = GsmModem(port, baudrate, timeout_s, serial_factory)
    try:
        modem._ser = serial_factory(port, baudrate, timeout=0.05, write_timeout=timeout_s)
    except (serial.SerialException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__
        return "unusable", _("cannot open {port}: {error}").format(port=port, error=reason)
    try:
        modem.command("AT", timeout_s=timeout_s)
        return "ok", ""
    except ModemError as exc:  # its own message is for the journal; this one for the volunteer
        if exc.code == "timeout":
            return "unusable", _("no answer to AT on {port}").format(port=port)
        if exc.code:
            return "unusable", _("the modem refused AT: {error}").format(error=exc.code)
        return "unusable", _("the modem cannot be used: {error}").format(error=exc)
    finally:
        modem.close()

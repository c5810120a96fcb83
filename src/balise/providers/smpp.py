"""SMPP 3.4: SMS through an aggregator's or an operator's SMSC (docs/providers.md, "SMPP").

Built on `smpplib` (synchronous, one socket, handlers called from the thread that reads):
it fits the dispatcher's thread pool, where each worker blocks on its own send, without
bridging to an asyncio loop as `aiosmpplib` would need.

One long-lived session per dispatcher process, on its own thread:

- bind_transceiver; enquire_link when the link is idle (every ENQUIRE_LINK seconds) and a
  link silent for two of those is taken for dead; reconnect with exponential backoff.
- submit_sm with registered_delivery, at most WINDOW unanswered at a time; each worker
  waits for its own submit_sm_resp (matched by sequence number).
- ESME_RTHROTTLED or ESME_RMSGQFUL: the part is tried again after a pause, a few times,
  then the message is retried later (RateLimitedError).
- GSM 03.38 7-bit when every character has a place in its table, else UCS-2; a longer
  text is cut into parts with a concatenation UDH (never inside an escape sequence or a
  surrogate pair).
- deliver_sm: a delivery receipt (its message id matched to the delivery: the ids the
  SMSC gave to each part are remembered, and written as the delivery's provider_ref) goes
  to ON_RECEIPT; any other message (a reply "OK") to ON_INCOMING. Both are callbacks the
  layer above passes in (balise.providers.events): nothing here imports above providers.
  A callback that fails answers the SMSC "temporary error" so that it delivers the
  receipt or message again later.
"""

from __future__ import annotations

import itertools
import queue
import logging
import random
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from smpplib import client as smpp_client
from smpplib import consts
from smpplib import exceptions as smpp_errors
from smpplib import smpp
from smpplib.gsm import GSM_CHARACTER_TABLE

from balise.providers.base import (
    AmbiguousError,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendResult,
    UnavailableError,
)

log = logging.getLogger(__name__)
# smpplib logs every PDU (numbers, texts) at DEBUG and each connection at INFO.
logging.getLogger("smpp").setLevel(logging.WARNING)

GSM7 = 0x00
UCS2 = 0x08
UDHI = 0x40
RECEIPT_MASK = 0x3C  # esm_class bits 2-5: the message type
RECEIPT = 0x04  # SMSC delivery receipt
ROK = consts.SMPP_ESME_ROK
# Answers that mean "slow down": the part is tried again.
THROTTLED = {consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RMSGQFUL}
# Answers about the recipient: another provider would not do better.
REFUSED_RECIPIENT = {consts.SMPP_ESME_RINVDSTADR}
# Receipt "stat:" words -> Delivery.carrier_state.
RECEIPT_STATES = {
    "DELIVRD": "delivered", "ACCEPTD": "sent", "ENROUTE": "sent", "UNDELIV": "undelivered",
    "EXPIRED": "undelivered", "REJECTD": "failed", "DELETED": "failed",
}
# The message_state TLV (SMPP 3.4 5.2.28) -> the same words.
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 8: "REJECTD"}

_GSM_BASIC = {ch: bytes([i]) for i, ch in enumerate(GSM_CHARACTER_TABLE[:128]) if ch != "`" or i == 0x60}
_GSM_BASIC.pop("`", None)  # (the table's filler: ` has no place in GSM 03.38)
_GSM_EXTENDED = {ch: b"\x1b" + bytes([i]) for i, ch in enumerate(GSM_CHARACTER_TABLE[128:]) if ch != "`"}
_GSM_DECODE = {v: k for k, v in {**_GSM_BASIC, **_GSM_EXTENDED}.items()}


# -- encoding -------------------------------------------------------------------------

def gsm_units(text: str) -> list[bytes] | None:
    """TEXT as GSM 03.38 septets (one byte each, unpacked as SMPP carries them), one
    item per character (an extension character is two septets); None when a character
    has no place in the GSM alphabet."""
    units = []
    for ch in text:
        unit = _GSM_BASIC.get(ch) or _GSM_EXTENDED.get(ch)
        if unit is None:
            return None
        units.append(unit)
    return units


def ucs2_units(text: str) -> list[bytes]:
    """TEXT as UTF-16BE, one item per character (a surrogate pair stays whole)."""
    return [ch.encode("utf-16-be") for ch in text]


def encode(text: str, reference: int | None = None) -> tuple[int, list[bytes]]:
    """(data_coding, short_message of each part). One part: up to 160 GSM septets or 70
    UCS-2 characters; more: parts of 153 septets or 67 characters, each behind a
    concatenation UDH (05 00 03 <reference> <count> <number>)."""
    units = gsm_units(text)
    coding, single, part = (GSM7, 160, 153) if units is not None else (UCS2, 140, 134)
    if units is None:
        units = ucs2_units(text)
    if sum(map(len, units)) <= single:
        return coding, [b"".join(units)]
    chunks, current, size = [], [], 0
    for unit in units:
        if size + len(unit) > part:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(unit)
        size += len(unit)
    chunks.append(b"".join(current))
    if len(chunks) > 255:
        raise PermanentError("the message is too long for SMS")
    ref = random.randrange(256) if reference is None else reference & 0xFF
    return coding, [bytes([5, 0, 3, ref, len(chunks), n]) + c for n, c in enumerate(chunks, start=1)]


def decode(short_message: bytes, data_coding: int, esm_class: int = 0) -> str:
    """The text of a deliver_sm (its UDH skipped)."""
    data = short_message or b""
    if esm_class & UDHI and data:
        data = data[1 + data[0]:]
    if data_coding == UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding in (0x03, 0x01) or data_coding & 0xF0 == 0xF0:
        return data.decode("latin-1")
    out, i = [], 0
    while i < len(data):  # GSM septets, one a byte; an escape takes the next one with it
        unit = data[i:i + 2] if data[i] == 0x1B else data[i:i + 1]
        out.append(_GSM_DECODE.get(unit, "?" if unit[:1] != b"\x1b" else ""))
        i += len(unit)
    return "".join(out)


# -- receipts -------------------------------------------------------------------------

_RECEIPT_FIELDS = re.compile(r"(id|stat|err):\s*(\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Receipt:
    message_id: str  # the SMSC's id of one part, as its submit_sm_resp gave it
    state: str  # a Delivery.carrier_state: sent, delivered, undelivered, failed
    error: str  # the receipt's err: code ("000": none)
    key: str | None  # the delivery, when this process sent it (else found by provider_ref)
    provider: str


def parse_receipt(text: str, tlv_id: str = "", tlv_state: int | None = None) -> tuple[str, str, str] | None:
    """(message id, carrier state, error) of a receipt's text ("id:… stat:DELIVRD err:000")
    or of its receipted_message_id/message_state TLVs; None when it is not one."""
    fields = {k.lower(): v for k, v in _RECEIPT_FIELDS.findall(text or "")}
    message_id = tlv_id or fields.get("id", "")
    word = MESSAGE_STATES.get(tlv_state or 0) or fields.get("stat", "").upper()
    state = RECEIPT_STATES.get(word)
    if not message_id or state is None:
        return None
    error = fields.get("err", "")
    return message_id, state, "" if error.strip("0") == "" else error


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


# -- the session ----------------------------------------------------------------------

class _Client(smpp_client.Client):
    """smpplib's client with its writes serialised: the workers' submit_sm and the
    reading thread's answers (deliver_sm_resp, enquire_link) share one socket."""

    def __init__(self, *args, inbox: queue.SimpleQueue | None = None, **kwargs):
        super().__init__(*args, allow_unknown_opt_params=True, **kwargs)
        self.write_lock = threading.Lock()
        self.last_rx = time.monotonic()
        self.inbox = inbox

    def _message_received(self, pdu):
        """A deliver_sm: handled on the provider's handler thread (a receipt writes to the
        database: the reading thread must go on reading submit_sm_resp meanwhile), which
        answers it once handled."""
        if self.inbox is None:
            return super()._message_received(pdu)
        self.inbox.put((self, pdu))

    def send_pdu(self, p):
        with self.write_lock:
            return super().send_pdu(p)

    def read_pdu(self):
        pdu = super().read_pdu()
        self.last_rx = time.monotonic()
        if pdu.command == "unbind":  # the SMSC ends the session: answer, and bind again
            resp = smpp.make_pdu("unbind_resp", client=self)
            resp.sequence = pdu.sequence
            self.send_pdu(resp)
            raise smpp_errors.ConnectionError("the SMSC unbound")
        if pdu.command == "unbind_resp":  # (the answer to our unbind: the session is over)
            raise smpp_errors.ConnectionError("unbound")
        return pdu


class _Sequence:
    """Sequence numbers for the PDUs, safe across threads (one per provider, so that a
    reconnection never reuses the number of a PDU still waited for)."""

    def __init__(self):
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._last = 0

    @property
    def sequence(self) -> int:
        return self._last

    def next_sequence(self) -> int:
        with self._lock:
            self._last = next(self._counter) % 0x7FFFFFFF or next(self._counter)
            return self._last


class _Waiter:
    __slots__ = ("event", "status", "message_id", "lost")

    def __init__(self):
        self.event = threading.Event()
        self.status, self.message_id, self.lost = None, "", False


class _Lost(Exception):
    """The session dropped while a PDU was out."""


class SmppProvider(Provider):
    name = "smpp"
    channels = ("sms",)

    def __init__(self, host: str, port: int, system_id: str, password: str, *, source_addr: str,
                 system_type: str = "", window: int = 10, timeout: float = 5.0, enquire_link_seconds: float = 30.0,
                 throttle_pause: float = 1.0, throttle_tries: int = 3, backoff: tuple[float, float] = (1.0, 60.0),
                 on_receipt=None, on_incoming=None, name: str = "smpp", start: bool = True, remember: int = 100_000):
        if not (host and system_id and password and source_addr):
            raise ValueError("the smpp provider needs BALISE_SMPP_HOST, BALISE_SMPP_SYSTEM_ID, "
                             "BALISE_SMPP_PASSWORD and BALISE_SMPP_SOURCE_ADDR")
        self.name = name
        self.host, self.port = host, int(port)
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.source_addr = source_addr
        self.source_ton, self.source_npi = ((1, 1) if source_addr.lstrip("+").isdigit() else (5, 0))
        self.timeout = timeout
        self.enquire_link_seconds = enquire_link_seconds
        self.throttle_pause, self.throttle_tries = throttle_pause, throttle_tries
        self.backoff = backoff
        self.on_receipt, self.on_incoming = on_receipt, on_incoming
        self.window = threading.BoundedSemaphore(max(1, window))
        self.sequence = _Sequence()
        self.pending: dict[int, _Waiter] = {}
        self.lock = threading.Lock()
        self.client: _Client | None = None
        self.bound = threading.Event()
        self.stopping = threading.Event()
        self.sent_ids: OrderedDict[str, str] = OrderedDict()  # SMSC message id -> delivery key
        self.remember = remember
        self.binds = 0  # sessions bound since start
        self.last_error = ""
        self.thread: threading.Thread | None = None
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # (client, deliver_sm) to handle
        self.handler: threading.Thread | None = None
        if start:
            self.start()

    # -- the session thread ---------------------------------------------------------

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=f"balise-{self.name}", daemon=True)
            self.thread.start()
            self.handler = threading.Thread(target=self._handle_deliveries, name=f"balise-{self.name}-in", daemon=True)
            self.handler.start()

    def _handle_deliveries(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            client, pdu = item
            status = self._on_deliver_sm(pdu)
            resp = smpp.make_pdu("deliver_sm_resp", client=client, status=status)
            resp.sequence = pdu.sequence
            try:
                client.send_pdu(resp)
            except Exception:  # (the session dropped: the SMSC delivers it again on the next one)
                log.info("%s: a deliver_sm was handled after its session dropped", self.name)

    def _open(self) -> _Client:
        client = _Client(self.host, self.port, timeout=self.timeout, sequence_generator=self.sequence,
                         logger_name="smpp.balise", inbox=self.inbox)
        try:
            client.connect()
            client.bind_transceiver(system_id=self.system_id, password=self.password,
                                    system_type=self.system_type, interface_version=0x34)
        except BaseException:
            client.disconnect()
            raise
        client.set_message_received_handler(self._on_deliver_sm)
        client.set_message_sent_handler(self._on_submit_sm_resp)
        client.set_error_pdu_handler(self._on_error_pdu)
        client._socket.settimeout(self.enquire_link_seconds)  # idle this long: an enquire_link goes out
        return client

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self.stopping.is_set():
            try:
                client = self._open()
            except Exception as exc:
                self.last_error = _describe(exc)
                log.warning("%s: cannot bind to %s:%s (%s); again in %.0f s", self.name, self.host, self.port,
                            self.last_error, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            with self.lock:
                self.client = client
                self.binds += 1
            self.bound.set()
            log.info("%s: bound to %s:%s", self.name, self.host, self.port)
            try:
                self._listen(client)
            except Exception as exc:
                if not self.stopping.is_set():
                    self.last_error = _describe(exc)
                    log.warning("%s: session lost (%s); binding again", self.name, self.last_error)
            finally:
                self._drop(client)

    def _listen(self, client: _Client) -> None:
        """Read until the session ends. An idle socket times out every ENQUIRE_LINK
        seconds and smpplib sends an enquire_link then; nothing read for two of those
        means the link is dead."""
        while not self.stopping.is_set():
            pdu_command = None
            try:
                client.read_once(auto_send_enquire_link=True)
            except smpp_errors.PDUError as exc:  # (an error PDU not waited for: logged by _on_error_pdu)
                pdu_command = exc
            if pdu_command is None and client.state != consts.SMPP_CLIENT_STATE_BOUND_TRX:
                raise ConnectionError("the session was unbound")
            if time.monotonic() - client.last_rx > 2 * self.enquire_link_seconds:
                raise ConnectionError("no answer to enquire_link")

    def _drop(self, client: _Client) -> None:
        with self.lock:
            if self.client is client:
                self.client = None
                self.bound.clear()
            lost = list(self.pending.values())
            self.pending.clear()
        for waiter in lost:
            waiter.lost = True
            waiter.event.set()
        try:
            client.disconnect()
        except Exception:
            pass

    # -- what the SMSC sends --------------------------------------------------------

    def _on_submit_sm_resp(self, pdu, **kwargs):
        with self.lock:
            waiter = self.pending.pop(pdu.sequence, None)
        if waiter is not None:
            waiter.status, waiter.message_id = pdu.status, _text(getattr(pdu, "message_id", "")).strip("\x00")
            waiter.event.set()

    def _on_error_pdu(self, pdu):
        if pdu.command == "submit_sm_resp":
            return  # (read_once then hands it to _on_submit_sm_resp, which wakes its sender)
        if pdu.command == "generic_nack":
            with self.lock:
                waiter = self.pending.pop(pdu.sequence, None)
            if waiter is not None:
                waiter.status = pdu.status
                waiter.event.set()
            return
        log.warning("%s: the SMSC answered %s with status 0x%x", self.name, pdu.command, pdu.status)

    def _on_deliver_sm(self, pdu, **kwargs):
        esm_class = int(getattr(pdu, "esm_class", 0) or 0)
        text = decode(getattr(pdu, "short_message", b"") or b"", int(getattr(pdu, "data_coding", 0) or 0), esm_class)
        try:
            if esm_class & RECEIPT_MASK == RECEIPT:
                found = parse_receipt(text, _text(getattr(pdu, "receipted_message_id", "")).strip("\x00"),
                                      getattr(pdu, "message_state", None))
                if found is None:
                    log.warning("%s: a receipt that cannot be read was dropped", self.name)
                    return ROK
                message_id, state, error = found
                with self.lock:
                    key = self.sent_ids.get(message_id)
                if self.on_receipt is not None:
                    if self.on_receipt(Receipt(message_id, state, error, key, self.name)) == "unknown_delivery":
                        # Sent by another dispatcher whose outcome is not written yet: the
                        # SMSC delivers the receipt again later (as many times as it retries).
                        return consts.SMPP_ESME_RX_T_APPN
            elif self.on_incoming is not None:
                sender = _text(getattr(pdu, "source_addr", "")).strip("\x00")
                if getattr(pdu, "source_addr_ton", 0) == 1 and sender.isdigit():
                    sender = f"+{sender}"  # (international: E.164 without its plus)
                self.on_incoming(sender, text)
        except Exception:
            log.exception("%s: handling a deliver_sm failed; the SMSC will deliver it again", self.name)
            return consts.SMPP_ESME_RX_T_APPN
        return ROK

    # -- sending --------------------------------------------------------------------

    def _session(self) -> _Client:
        if not self.bound.wait(self.timeout):
            raise UnavailableError(f"{self.name} is not bound ({self.last_error or 'connecting'})")
        with self.lock:
            client = self.client
        if client is None:
            raise UnavailableError(f"{self.name} is not bound")
        return client

    def _submit(self, client: _Client, params: dict) -> _Waiter:
        """One submit_sm; its answer (status and message id). _Lost when the session
        dropped after it went out; UnavailableError when it could not go out."""
        if not self.window.acquire(timeout=self.timeout):
            raise RateLimitedError(f"{self.name}: the window stayed full", self.throttle_pause)
        try:
            waiter = _Waiter()
            # (the PDU takes its own number: smpplib's `sequence=` argument is ignored, the
            # PDU then reads the generator's latest number when it is written)
            pdu = smpp.make_pdu("submit_sm", client=client, **params)
            seq = pdu.sequence
            with self.lock:
                if self.client is not client:
                    raise UnavailableError(f"{self.name}: the session dropped")
                self.pending[seq] = waiter
            try:
                client.send_pdu(pdu)
            except (smpp_errors.ConnectionError, OSError, smpp_errors.PDUError) as exc:
                with self.lock:
                    self.pending.pop(seq, None)
                raise UnavailableError(f"{self.name}: submit_sm could not be written ({type(exc).__name__})") from exc
            if not waiter.event.wait(self.timeout):
                with self.lock:
                    self.pending.pop(seq, None)
                raise _Lost("no submit_sm_resp in time")
            if waiter.lost:
                raise _Lost("the session dropped before the submit_sm_resp")
            return waiter
        finally:
            self.window.release()

    def send(self, message: OutgoingMessage) -> SendResult:
        if message.channel != "sms":
            raise UnavailableError(f"{self.name} sends SMS only")
        coding, parts = encode(message.text)
        destination = message.to.lstrip("+")
        ids: list[str] = []
        for short_message in parts:
            params = dict(
                service_type="", source_addr_ton=self.source_ton, source_addr_npi=self.source_npi,
                source_addr=self.source_addr.lstrip("+") if self.source_ton == 1 else self.source_addr,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=destination,
                esm_class=UDHI if len(parts) > 1 else 0, data_coding=coding,
                registered_delivery=1, short_message=short_message,
            )
            for attempt in range(self.throttle_tries):
                try:
                    waiter = self._submit(self._session(), params)
                except _Lost as exc:
                    raise AmbiguousError(f"{self.name}: {exc}") from None
                except UnavailableError:
                    if ids:  # (earlier parts are out: the rest may still be taken elsewhere)
                        raise AmbiguousError(f"{self.name}: the session dropped after {len(ids)} part(s)") from None
                    raise
                except RateLimitedError:
                    if ids:
                        raise AmbiguousError(f"{self.name}: window full after {len(ids)} part(s)") from None
                    raise
                if waiter.status in THROTTLED:
                    if attempt + 1 < self.throttle_tries:
                        self.stopping.wait(self.throttle_pause * (attempt + 1))
                        continue
                    if ids:
                        raise AmbiguousError(f"{self.name}: throttled after {len(ids)} part(s)")
                    raise RateLimitedError(f"{self.name}: throttled by the SMSC (0x{waiter.status:x})",
                                           self.throttle_pause * self.throttle_tries)
                break
            status = waiter.status
            if status == ROK:
                ids.append(waiter.message_id)
                with self.lock:
                    self.sent_ids[waiter.message_id] = message.key
                    while len(self.sent_ids) > self.remember:
                        self.sent_ids.popitem(last=False)
                continue
            already = f" after {len(ids)} part(s)" if ids else ""
            if status in REFUSED_RECIPIENT and not ids:
                raise PermanentError(f"{self.name}: the SMSC refused the recipient (0x{status:x})")
            if ids:
                raise AmbiguousError(f"{self.name}: the SMSC refused a part (0x{status:x}){already}")
            raise UnavailableError(f"{self.name}: the SMSC refused the message (0x{status:x})")
        return SendResult(" ".join(ids))

    def check(self) -> str:
        """Bind a session of its own and unbind: the credentials work, nothing is sent."""
        client = smpp_client.Client(self.host, self.port, timeout=self.timeout, logger_name="smpp.balise",
                                    allow_unknown_opt_params=True)
        try:
            client.connect()
            client.bind_transceiver(system_id=self.system_id, password=self.password,
                                    system_type=self.system_type, interface_version=0x34)
            client.unbind()
        except smpp_errors.PDUError as exc:
            raise UnavailableError(f"the SMSC refused the bind ({_describe(exc)})") from exc
        except (smpp_errors.ConnectionError, OSError) as exc:
            raise UnavailableError(f"cannot reach the SMSC at {self.host}:{self.port} ({_describe(exc)})") from exc
        finally:
            client.disconnect()
        return f"bound to {self.host}:{self.port} as {self.system_id} and unbound"

    def status(self) -> dict:
        """For /health: whether the session is bound, and its last error."""
        return {"bound": self.bound.is_set(), "binds": self.binds, **({"session_error": self.last_error}
                                                                      if self.last_error else {})}

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            client = self.client
        if client is not None:
            try:  # (the reading thread reads the unbind_resp, and the session ends)
                client.send_pdu(smpp.make_pdu("unbind", client=client))
            except Exception:
                pass
        if self.thread is not None:
            self.thread.join(self.timeout)
        if self.handler is not None:
            self.inbox.put(None)
            self.handler.join(self.timeout)
        if client is not None and self.thread is not None and self.thread.is_alive():
            try:
                client._socket.shutdown(socket.SHUT_RDWR)
            except Exception:
                pass
            self.thread.join(self.timeout)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return str(exc)
    if isinstance(exc, smpp_errors.PDUError) and len(exc.args) > 1:
        return f"status 0x{exc.args[1]:x}"
    return type(exc).__name__

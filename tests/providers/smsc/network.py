"""The mobile network behind the SMSC: where Jasmin (the real SMSC Balise binds to)
hands the messages it routes, as an operator's SMSC would hand them to handsets.

Jasmin is an SMS gateway: it takes Balise's submit_sm, routes them and sends them on to
an upstream SMSC through an SMPP client connector, and turns the upstream's delivery
receipts into receipts for Balise. No handset or operator can be reached from here, so
this upstream end is played by this small SMPP server (PDUs encoded and decoded by
`smpplib`): it answers each submit_sm, then sends the receipt a handset's network would:
DELIVRD, or UNDELIV for a number ending in 0000 (a phone that is off for days). It can
also send a message from a handset (an SMS reply) that Jasmin routes to Balise. It
records every submit_sm it received, so that the tests can count what really went out.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from dataclasses import dataclass

from smpplib import smpp

UNREACHABLE_SUFFIX = "0000"


class _Seq:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def next_sequence(self):
        with self.lock:
            self.n += 1
            return self.n


@dataclass
class Submitted:
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes
    message_id: str


class Network:
    def __init__(self, system_id: str = "network", password: str = "netpw", receipt_delay: float = 0.3):
        # A handset acknowledges a message a moment after the network took it (and Jasmin
        # files the message id of a submit_sm_resp a moment after reading it).
        self.receipt_delay = receipt_delay
        self.system_id, self.password = system_id, password
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seq = _Seq()
        self.submitted: list[Submitted] = []
        self.lock = threading.Lock()
        self.sessions: list[tuple[socket.socket, threading.Lock]] = []
        self.bound = threading.Event()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True, name="network-accept").start()

    # -- test helpers -------------------------------------------------------------

    def texts(self) -> list[Submitted]:
        with self.lock:
            return list(self.submitted)

    def send_mo(self, sender: str, destination: str, text: str) -> None:
        """A handset's SMS to DESTINATION (Balise's number), through Jasmin."""
        sock, lock = self.sessions[-1]
        pdu = smpp.make_pdu("deliver_sm", client=self.seq, source_addr_ton=1, source_addr_npi=1,
                            source_addr=sender.lstrip("+"), dest_addr_ton=1, dest_addr_npi=1,
                            destination_addr=destination.lstrip("+"), esm_class=0, data_coding=0,
                            short_message=text.encode("ascii"))
        self._write(sock, lock, pdu)

    def close(self) -> None:
        self.stopped = True
        self.server.close()
        for sock, _lock in self.sessions:
            try:
                sock.close()
            except OSError:
                pass

    # -- the server ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            lock = threading.Lock()
            self.sessions.append((sock, lock))
            threading.Thread(target=self._serve, args=(sock, lock), daemon=True, name="network-session").start()

    @staticmethod
    def _write(sock, lock, pdu) -> None:
        data = pdu.generate()
        with lock:
            sock.sendall(data)

    @staticmethod
    def _read(sock) -> bytes | None:
        head = b""
        while len(head) < 4:
            part = sock.recv(4 - len(head))
            if not part:
                return None
            head += part
        length = struct.unpack(">L", head)[0]
        body = b""
        while len(body) < length - 4:
            part = sock.recv(length - 4 - len(body))
            if not part:
                return None
            body += part
        return head + body

    def _answer(self, sock, lock, command: str, request, **params) -> None:
        resp = smpp.make_pdu(command, client=self.seq, **params)
        resp.sequence = request.sequence
        self._write(sock, lock, resp)

    def _serve(self, sock, lock) -> None:
        try:
            while True:
                raw = self._read(sock)
                if raw is None:
                    return
                pdu = smpp.parse_pdu(raw, client=self.seq, allow_unknown_opt_params=True)
                if pdu.command.startswith("bind_"):
                    ok = (pdu.system_id.decode() == self.system_id and pdu.password.decode() == self.password)
                    self._answer(sock, lock, f"{pdu.command}_resp", pdu, status=0 if ok else 0x0E,
                                 system_id=self.system_id)
                    if ok:
                        self.bound.set()
                elif pdu.command == "enquire_link":
                    self._answer(sock, lock, "enquire_link_resp", pdu)
                elif pdu.command == "unbind":
                    self._answer(sock, lock, "unbind_resp", pdu)
                    return
                elif pdu.command == "submit_sm":
                    self._submit(sock, lock, pdu)
        except OSError:
            return

    def _submit(self, sock, lock, pdu) -> None:
        message_id = uuid.uuid4().hex[:20]
        destination = pdu.destination_addr.decode()
        with self.lock:
            self.submitted.append(Submitted(destination, pdu.data_coding, pdu.esm_class, pdu.short_message,
                                            message_id))
        self._answer(sock, lock, "submit_sm_resp", pdu, message_id=message_id)
        if pdu.registered_delivery & 0x03:
            stat, err = ("UNDELIV", "001") if destination.endswith(UNREACHABLE_SUFFIX) else ("DELIVRD", "000")
            text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                    f"submit date:2612010000 done date:2612010000 stat:{stat} err:{err} text:")
            receipt = smpp.make_pdu("deliver_sm", client=self.seq, source_addr_ton=1, source_addr_npi=1,
                                    source_addr=destination, dest_addr_ton=pdu.source_addr_ton,
                                    dest_addr_npi=pdu.source_addr_npi, destination_addr=pdu.source_addr.decode(),
                                    esm_class=0x04, data_coding=0, short_message=text.encode())
            timer = threading.Timer(self.receipt_delay, self._late_write, args=(sock, lock, receipt))
            timer.daemon = True
            timer.start()

    def _late_write(self, sock, lock, pdu) -> None:
        try:
            self._write(sock, lock, pdu)
        except OSError:
            pass

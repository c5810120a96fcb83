"""A stand-in for Twilio's REST API on loopback: Twilio itself cannot be reached from
here, so the real `twilio` SDK is pointed at this server (BALISE_TWILIO_API_URL).

It implements the documented endpoints the provider uses, with HTTP basic auth
(account SID : auth token) and form-encoded parameters, answering Twilio's JSON:

- POST /2010-04-01/Accounts/{Sid}/Messages.json  (To, From, Body, StatusCallback)
- GET  /2010-04-01/Accounts/{Sid}/Messages.json  (To, From: newest first)
- POST /2010-04-01/Accounts/{Sid}/Calls.json     (To, From, Url, Method, StatusCallback,
                                                  StatusCallbackEvent, MachineDetection)
- GET  /2010-04-01/Accounts/{Sid}/Calls.json
- GET  /2010-04-01/Accounts/{Sid}.json           (the account)

Errors are Twilio's: 401 with code 20003, 400 with code 21211 for an invalid "To".
`hold_creates` makes the next creates be stored and then answered only once released
(the client times out in between: the ambiguous case); `lose_creates` holds them without
storing them (a timeout where Twilio took nothing); `refuse_creates` answers 503.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "standin-auth-token"
INVALID_NUMBER = "+33600000000"
API = "/2010-04-01/Accounts/"


class TwilioStandIn:
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messages: list[dict] = []
        self.calls: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.hold_creates = 0
        self.refuse_creates = 0
        self.lose_creates = 0  # held, then refused without being stored: never taken
        self.released = threading.Event()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                standin.handle(self, "GET")

            def do_POST(self):
                standin.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    # -- the API ------------------------------------------------------------------

    def _answer(self, handler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (the ambiguous case)

    def _error(self, handler, status: int, code: int, message: str) -> None:
        self._answer(handler, status, {"code": code, "message": message, "status": status,
                                       "more_info": f"https://www.twilio.com/docs/errors/{code}"})

    def handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode()) if length else {}
        with self.lock:
            self.requests.append((method, parts.path))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return self._error(handler, 401, 20003, "Authenticate")
        base = f"{API}{self.account_sid}"
        if parts.path == f"{base}.json" and method == "GET":
            return self._answer(handler, 200, {"sid": self.account_sid, "status": "active", "friendly_name": "Balise",
                                               "type": "Full"})
        match = re.fullmatch(re.escape(base) + r"/(Messages|Calls)\.json", parts.path)
        if not match:
            return self._error(handler, 404, 20404, "The requested resource was not found")
        kind = match.group(1)
        store = self.messages if kind == "Messages" else self.calls
        if method == "GET":
            with self.lock:
                rows = [r for r in reversed(store) if all(r[k.lower()] == v for k, v in query.items()
                                                          if k in ("To", "From"))]
            key = kind.lower()
            return self._answer(handler, 200, {key: [self._public(r) for r in rows], "page": 0, "page_size": 50,
                                               "uri": parts.path, "first_page_uri": parts.path,
                                               "next_page_uri": None, "previous_page_uri": None,
                                               "start": 0, "end": len(rows)})
        one = {k: v[-1] for k, v in form.items()}
        for name in ("To", "From") + (("Body",) if kind == "Messages" else ("Url",)):
            if not one.get(name):
                return self._error(handler, 400, 21604 if name == "To" else 21602, f"A '{name}' is required")
        if one["To"] == INVALID_NUMBER:
            return self._error(handler, 400, 21211, "The 'To' number is not a valid phone number.")
        with self.lock:
            lose = self.lose_creates > 0
            self.lose_creates -= lose
        if lose:
            self.released.wait(30)
            return self._error(handler, 503, 20503, "Service unavailable")
        with self.lock:
            if self.refuse_creates:
                self.refuse_creates -= 1
                refuse = True
            else:
                refuse = False
        if refuse:
            return self._error(handler, 503, 20503, "Service unavailable")
        row = {
            "sid": ("SM" if kind == "Messages" else "CA") + uuid.uuid4().hex,
            "account_sid": self.account_sid, "to": one["To"], "from": one["From"], "status": "queued",
            "date_created": format_datetime(datetime.now(timezone.utc), usegmt=False),
            "form": form,
        }
        if kind == "Messages":
            row["body"] = one["Body"]
        with self.lock:
            store.append(row)
            hold = self.hold_creates > 0
            self.hold_creates -= hold
        if hold:
            self.released.wait(30)
        self._answer(handler, 201, self._public(row))

    @staticmethod
    def _public(row: dict) -> dict:
        return {k: v for k, v in row.items() if k != "form"}

    # -- what the tests read ------------------------------------------------------

    def param(self, row: dict, name: str) -> str:
        return row["form"][name][-1]

    def params(self, row: dict, name: str) -> list[str]:
        return row["form"].get(name, [])

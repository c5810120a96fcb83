"""Heartbeats and presses without Django's request machinery (issue 16).

Under ASGI, Django runs its sync middleware for every request on a thread of its own,
created and joined per request, with a fresh database connection: about 8 ms of CPU for a
heartbeat, so one process held some 150 a second, when a region's devices beat 1,700 times
a second before any alert. Here a well-formed heartbeat with a valid token is parsed and
checked with the device API's own parser and schema, and answered by the view's own
function (`heartbeat_answer`: one UPDATE that also checks the token, two SELECTs) on a
thread that keeps its database connection, rendered by ninja's encoder. A press (POST
/api/v1/alerts) the same way, with the view's `alert_answer`: the alert path paid the
same few milliseconds of machinery on top of its own work.

Everything else (a malformed body, an unknown token, a database error, any other path)
goes to Django untouched, so that every refusal is the device API's usual answer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from ninja.responses import NinjaJSONEncoder

from balise.api.jsonbody import BodyError, loads
from balise.api.middleware import replaying

log = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/v1/heartbeat"
ALERTS_PATH = "/api/v1/alerts"
# What Django's SecurityMiddleware and XFrameOptionsMiddleware add to the view's answer.
JSON = b"application/json; charset=utf-8"  # (ninja's; the API's refusals say application/json)
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def _bearer(scope) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, as ninja's HttpBearer reads
    it; None for anything else (Django then answers)."""
    values = [v for k, v in scope.get("headers") or () if k == b"authorization"]
    if len(values) != 1:
        return None
    try:
        scheme, _, token = values[0].decode("latin-1").partition(" ")
    except UnicodeDecodeError:
        return None
    return token if scheme.lower() == "bearer" and token else None


def _payload(body: bytes, schema):
    from pydantic import ValidationError

    try:
        value = loads(body)
    except BodyError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        return schema.model_validate(value)
    except ValidationError:
        return None


def _encoded(schema, answer: dict) -> bytes:
    return json.dumps(schema.model_validate(answer).model_dump(), cls=NinjaJSONEncoder).encode()


def _beat(token: str, payload) -> tuple[int, bytes, bytes] | None:
    """The heartbeat's answer, or None when the token is not a device's (Django answers 401)."""
    from balise.api.device import heartbeat_answer
    from balise.api.schemas import HeartbeatOut

    answer = heartbeat_answer(token, payload)  # (the token is checked by its UPDATE)
    return None if answer is None else (200, _encoded(HeartbeatOut, answer), JSON)


def _alert(token: str, payload) -> tuple[int, bytes, bytes] | None:
    """The press's answer (the alert raised, joined or replayed, or the device API's refusal
    of it), or None when the token is not a device's (Django answers 401)."""
    from balise.alerts.actions import AlertError
    from balise.api.device import alert_answer, alert_error
    from balise.api.schemas import AlertOut
    from balise.devices.actions import authenticate_token

    device = authenticate_token(token)
    if device is None:
        return None
    try:
        status, answer = alert_answer(device, payload)
    except AlertError as exc:
        refusal = alert_error(exc)
        # (Django logs its 4xx answers as warnings; an operator reads these the same way)
        log.warning("press refused: %s %s", refusal.status_code, exc.code)
        return refusal.status_code, refusal.content, refusal["Content-Type"].encode("latin-1")
    return status, _encoded(AlertOut, answer), JSON


# The threads that answer here, each keeping its database connection from one request to
# the next: opening one cost more than the heartbeat itself (SQLite: the file and its
# pragmas; PostgreSQL: the pool's checkout and its health check). Measured with
# bench/heartbeat_capacity.py: 4.3 ms of CPU per heartbeat on SQLite before, 1.1 after;
# 1.7-2.0 ms on PostgreSQL before, 1.2-1.3 after. run_in_executor, unlike sync_to_async,
# does not carry the request's context into the thread: Django's connection (kept per
# context) is then the thread's, not the request's. A pool of their own, so that the
# connections kept are these threads' and no others.
_THREADS = ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="balise-device")


def _answered(handler, token: str, payload) -> tuple[int, bytes, bytes] | None:
    try:
        return handler(token, payload)
    finally:
        # What Django does after a request that failed: the connection is closed (with the
        # pool, handed back, which replaces it if broken) rather than reused.
        if connection.errors_occurred:
            connection.close()


# Path -> (the device API's schema, this module's handler), by name: read at each request
# without building anything. A press is idempotent on its client id: should anything fail
# half-way (a busy database), Django takes the same request again and answers what the
# device must see.
ROUTES = {HEARTBEAT_PATH: ("HeartbeatIn", "_beat"), ALERTS_PATH: ("AlertIn", "_alert")}


class DeviceFastPath:
    """ASGI: POST /api/v1/heartbeat and POST /api/v1/alerts answered here when they can be;
    the rest to APP. Sits inside BodyLimitASGI, which has already bounded the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        route = ROUTES.get(scope.get("path")) if scope["type"] == "http" and scope.get("method") == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        token = _bearer(scope)
        if token is None:
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client gave up
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        answer = None
        from balise.api import schemas

        schema, handler = getattr(schemas, route[0]), globals()[route[1]]
        payload = _payload(body, schema)
        if payload is not None:
            try:
                answer = await asyncio.get_running_loop().run_in_executor(_THREADS, _answered, handler, token, payload)
            except Exception:  # a busy or unreachable database: Django answers (503, its usual log)
                log.debug("device fast path handed a request to Django", exc_info=True)
        if answer is None:
            return await self.app(scope, replaying(body, receive), send)
        status, content, content_type = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), *_HEADERS,
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

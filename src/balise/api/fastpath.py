"""Heartbeats without Django's request machinery (issue 16).

Under ASGI, Django runs its sync middleware for every request on a thread of its own,
created and joined per request, with a fresh database connection: about 8 ms of CPU for a
heartbeat, so one process held some 150 a second, when a region's devices beat 1,700 times
a second before any alert. Here a well-formed heartbeat with a valid token is parsed and
checked with the device API's own parser and schema, and answered by the view's own
function (`heartbeat_answer`: one UPDATE that also checks the token, one SELECT) on a
worker thread, rendered by ninja's encoder.

Everything else (a malformed body, an unknown token, a database error, any other path)
goes to Django untouched, so that every refusal is the device API's usual answer."""

from __future__ import annotations

import json
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from ninja.responses import NinjaJSONEncoder

from balise.api.jsonbody import BodyError, loads
from balise.api.middleware import replaying

log = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/v1/heartbeat"
# What Django's SecurityMiddleware and XFrameOptionsMiddleware add to the view's answer.
_HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
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


def _payload(body: bytes):
    from pydantic import ValidationError

    from balise.api.schemas import HeartbeatIn

    try:
        value = loads(body)
    except BodyError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        return HeartbeatIn.model_validate(value)
    except ValidationError:
        return None


def _beat(token: str, payload) -> bytes | None:
    """The answer's body, or None when the token is not a device's (Django answers 401)."""
    from balise.api.device import heartbeat_answer
    from balise.api.schemas import HeartbeatOut

    # What Django does around every request: a connection that is broken, or past its
    # age, is closed (with the pool, handed back) rather than reused.
    close_old_connections()
    try:
        answer = heartbeat_answer(token, payload)  # (the token is checked by its UPDATE)
        if answer is None:
            return None
        return json.dumps(HeartbeatOut.model_validate(answer).model_dump(), cls=NinjaJSONEncoder).encode()
    finally:
        close_old_connections()


class HeartbeatFastPath:
    """ASGI: POST /api/v1/heartbeat answered here when it can be; the rest to APP. Sits
    inside BodyLimitASGI, which has already bounded the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != HEARTBEAT_PATH or scope.get("method") != "POST":
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
        payload = _payload(body)
        if payload is not None:
            try:
                answer = await sync_to_async(_beat, thread_sensitive=False)(token, payload)
            except Exception:  # a busy or unreachable database: Django answers (503, its usual log)
                log.debug("heartbeat fast path handed a request to Django", exc_info=True)
        if answer is None:
            return await self.app(scope, replaying(body, receive), send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


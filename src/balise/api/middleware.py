"""Body limits at the edge. `BodyLimitASGI` wraps the ASGI application and counts the
bytes as they arrive, so a chunked body (no Content-Length) is held to the same limit;
`DeviceAPIBodyLimit` (Django middleware) checks Content-Length for the device API, also
under WSGI and the test client."""

from __future__ import annotations

import json

from django.conf import settings

from balise.api.errors import error_response

API_PREFIX = "/api/"
VOICE_MESSAGE_PATH = "/api/v1/voice-message"


def body_limit(path: str) -> int:
    if path == VOICE_MESSAGE_PATH:
        return settings.VOICE_MESSAGE_MAX_BYTES
    if path.startswith(API_PREFIX):
        return settings.API_MAX_BODY_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _too_large_message(limit: int) -> str:
    return f"the body is limited to {limit} bytes"


class DeviceAPIBodyLimit:
    """Refuse oversized device API bodies before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "bad_request", "invalid Content-Length")
            limit = body_limit(request.path)
            if length > limit:
                return error_response(413, "too_large", _too_large_message(limit))
        return self.get_response(request)


class BodyLimitASGI:
    """ASGI middleware: answers 413 as soon as a request body passes its path's limit,
    whether it came with a Content-Length or in chunks. The body, once complete and within
    the limit, is handed to the application in one message."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False  # the server (uvicorn) refuses a malformed Content-Length itself
            if too_large:
                return await self._refuse(scope, send, limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client gave up
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await self._refuse(scope, send, limit)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    @staticmethod
    async def _refuse(scope, send, limit: int) -> None:
        message = _too_large_message(limit)
        if scope.get("path", "").startswith(API_PREFIX):
            body, content_type = json.dumps({"error": "too_large", "message": message}).encode(), b"application/json"
        else:
            body, content_type = message.encode(), b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def replaying(body: bytes, receive):
    """An ASGI `receive` that hands BODY, already read, in one message, then RECEIVE's."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

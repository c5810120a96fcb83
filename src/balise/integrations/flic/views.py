"""The Flic webhook: thin, JSON in and out; the work is in actions.py."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from balise.api.errors import error_response
from balise.integrations.flic import actions
from balise.integrations.flic.tokens import FlicError

log = logging.getLogger(__name__)


def _error(exc: FlicError) -> JsonResponse:
    # The code only: never the token, the serial number or the claims.
    log.warning("flic webhook refused: %s", exc.reason)
    fields = [{"field": exc.field, "message": str(exc)}] if exc.field else None
    return error_response(exc.status, exc.code, str(exc), fields)


def _token(request) -> str:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise FlicError(400, "bad_request", "invalid Content-Length") from None
    if length > settings.FLIC_MAX_BODY_BYTES:
        raise FlicError(413, "too_large", f"the body is limited to {settings.FLIC_MAX_BODY_BYTES} bytes")
    try:
        body = request.body
    except RequestDataTooBig:
        raise FlicError(413, "too_large", "the body is too large") from None
    if len(body) > settings.FLIC_MAX_BODY_BYTES:
        raise FlicError(413, "too_large", f"the body is limited to {settings.FLIC_MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise FlicError(400, "malformed_json", "the body is not JSON", field="body") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
        raise FlicError(400, "invalid", "the body must be {\"token\": \"<JWT>\"}", field="token")
    return payload["token"]


@csrf_exempt
@require_POST
def webhook(request):
    """POST {"token": "<JWT>"} from Flic's proxy, one per press. The alert is committed
    before the answer; {"message": ...} only when the association set a neutral text."""
    try:
        press = actions.receive_press(_token(request))
    except FlicError as exc:
        return _error(exc)
    except OperationalError as exc:
        # Busy or restarting database: Flic's proxy retries, and the press id makes it safe.
        log.warning("flic webhook: database unavailable (%s)", type(exc.__cause__ or exc).__name__)
        response = error_response(503, "unavailable", "the server is busy; retry")
        response["Retry-After"] = "1"
        return response
    return JsonResponse({"message": press.message} if press.message else {}, status=200)

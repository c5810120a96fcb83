"""A busy or restarting database is not a bug in the request: every page and callback
answers 503 with Retry-After (never a 500), so that a contact tapping "I'm going" or a
gateway posting a receipt knows to try again. The device API has its own handler
(balise.api.urls) with the same answer."""

from __future__ import annotations

import logging

from django.db import OperationalError
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from balise.api.errors import error_response

log = logging.getLogger(__name__)


def _wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.path.startswith(("/api/", "/inbound/"))


class DatabaseBusyMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError):
            return None
        cause = exception.__cause__ or exception
        # The driver's first line ("database is locked"…) holds no request data.
        reason = (str(cause).splitlines() or [""])[0][:120]
        log.warning("database unavailable on %s (%s: %s)",
                    request.resolver_match.route if request.resolver_match else "?", type(cause).__name__, reason)
        if _wants_json(request):
            response = error_response(503, "unavailable", "the server is busy; retry")
        else:
            response = render(request, "tracking/busy.html", status=503)
        response["Retry-After"] = "2"
        response["Cache-Control"] = "no-store"
        return response

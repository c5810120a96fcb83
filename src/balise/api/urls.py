import logging

from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from balise.api.auth import DeviceToken
from balise.api.device import router as device_router
from balise.api.errors import error_response, validation_fields
from balise.api.jsonbody import BodyError, DeviceJSONParser
from balise.api.pairing import router as pairing_router
from balise.api.voice import router as voice_router
from balise.evidence.api import router as evidence_router

api = NinjaAPI(
    title="Balise device API",
    version="1",
    description="What buttons, home stations and phone apps call. See docs/device-api.md.",
    auth=DeviceToken(),
    parser=DeviceJSONParser(),
    urls_namespace="api",
)
api.add_router("", device_router)
api.add_router("", voice_router)
api.add_router("/evidence", evidence_router)
api.add_router("", pairing_router)


@api.exception_handler(ValidationError)
def on_validation_error(request, exc):
    return error_response(422, "invalid", "the request is not valid", validation_fields(exc.errors))


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return error_response(401, "unauthorized", "missing, unknown or revoked device token")


@api.exception_handler(HttpError)
def on_http_error(request, exc):
    if isinstance(exc.__cause__, BodyError):  # ninja wraps what the parser refused
        cause = exc.__cause__
        return error_response(exc.status_code, "bad_request", str(cause), [{"field": cause.field, "message": str(cause)}])
    return error_response(exc.status_code, "bad_request", str(exc))


@api.exception_handler(RequestDataTooBig)
def on_too_big(request, exc):
    return error_response(413, "too_large", "the request body is too large")


@api.exception_handler(OperationalError)
def on_database_unavailable(request, exc):
    # Overload (no free connection in the pool) or a database restart: the device
    # retries, and client ids make the retry safe whatever was stored.
    # The driver's first line ("database is locked", "connection refused"…) says which;
    # it holds no request data.
    reason = str(exc.__cause__ or exc).splitlines()[0][:120] if str(exc.__cause__ or exc) else ""
    logging.getLogger("balise.api").warning("device API: database unavailable (%s: %s)",
                                            type(exc.__cause__ or exc).__name__, reason)
    response = error_response(503, "unavailable", "the server is busy; retry with the same ids")
    response["Retry-After"] = "1"
    return response


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    logging.getLogger("balise.api").exception("device API error on %s", request.resolver_match.route if request.resolver_match else "?")
    return error_response(500, "server_error", "internal error; the request can be retried with the same ids")

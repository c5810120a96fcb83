"""Device API for evidence, mounted at /api/v1/evidence/. Thin: parse, call an action,
shape the answer. Errors are JSON {"error", "message", "fields", "retry"}."""

from __future__ import annotations

import uuid

from django.http import JsonResponse
from ninja import Router, Schema
from pydantic import Field

from balise.api import jsonbody
from balise.api.schemas import ErrorOut, MultilineText
from balise_evidence.intake import IntakeError

from . import actions

router = Router(tags=["evidence"])


class DeviceKeyIn(Schema):
    public_key_pem: MultilineText = Field(max_length=4096)


class KeysOut(Schema):
    seal_public_pem: str
    seal_fingerprint: str
    signing_public_pem: str
    signing_fingerprint: str
    export_public_pem: str
    export_fingerprint: str


class FingerprintOut(Schema):
    fingerprint: str


class ReceiptOut(Schema):
    receipt: dict
    signature: str
    sha256: str
    duplicate: bool
    conflict: bool


class DeletionOut(Schema):
    state: str
    due_at: str


class EvidenceErrorOut(ErrorOut):
    retry: bool = False


ERRORS = {code: EvidenceErrorOut for code in (400, 401, 403, 404, 409, 410, 413, 422, 503)}


def _error(status: int, code: str, message: str, field: str | None, retry: bool = False) -> JsonResponse:
    body = {"error": code, "message": message, "retry": retry}
    if field:
        body["fields"] = [{"field": field, "message": message}]
    return JsonResponse(body, status=status)


def _refused(exc: IntakeError | actions.EvidenceError) -> JsonResponse:
    return _error(exc.status, exc.code, exc.message, exc.field, exc.retry)


@router.get("/keys", response={200: KeysOut, **ERRORS}, summary="The server's evidence public keys (seal, receipts, exports)")
def keys(request):
    return actions.server_keys()


# Public (no device token) and documented in docs/evidence.md rather than in the device
# API's schema, whose every other route (but pairing) takes a device token.
@router.get("/key-log", auth=None, include_in_schema=False, summary="The platform's signed, append-only key log (public: experts anchor packages on it)")
def key_log(request):
    from django.http import HttpResponse

    response = HttpResponse(actions.key_log_document(), content_type="application/json")
    response["Cache-Control"] = "no-cache"
    return response


@router.post("/device-key", response={200: FingerprintOut, 201: FingerprintOut, **ERRORS}, summary="Register this device's evidence signing key (ECDSA P-256)")
def device_key(request, payload: DeviceKeyIn):
    try:
        key, created = actions.register_device_key(request.auth, payload.public_key_pem)
    except actions.EvidenceError as exc:
        return _refused(exc)
    return JsonResponse({"fingerprint": key.fingerprint}, status=201 if created else 200)


@router.post("/records", response={200: ReceiptOut, 201: ReceiptOut, **ERRORS}, summary="Upload one sealed record; returns its signed receipt (idempotent)")
def records(request):
    try:
        body = jsonbody.loads(request.body)
    except jsonbody.BodyError as exc:
        return _error(400, "invalid", str(exc), exc.field)
    try:
        accepted = actions.accept_record(request.auth, body)
    except (IntakeError, actions.EvidenceError) as exc:
        return _refused(exc)
    return JsonResponse(accepted.as_json(), status=200 if accepted.duplicate else 201)


@router.post("/sessions/{session}/deletion", response={202: DeletionOut, **ERRORS}, summary="Ask for deletion (scheduled, never immediate)")
def deletion(request, session: uuid.UUID):
    try:
        case = actions.request_deletion_by_device(request.auth, session)
    except actions.EvidenceError as exc:
        return _refused(exc)
    return JsonResponse({"state": case.state, "due_at": case.deletion_due_at.isoformat()}, status=202)

"""POST /api/v1/pair: a device exchanges the one-time code shown in the console for its
token. The only device endpoint without a token (the code is the credential)."""

from __future__ import annotations

from ninja import Router, Schema, Status

from balise.api.errors import error_response
from balise.console.pairing import PairingError, exchange, source_key

router = Router(tags=["pairing"])

MESSAGES = {
    "rate_limited": "too many wrong codes; wait and try again",
    "invalid_code": "unknown or already used pairing code",
    "expired_code": "this pairing code has expired; ask for a new one",
}


class PairIn(Schema):
    code: str


class PairOut(Schema):
    token: str
    device: str
    kind: str


@router.post("/pair", auth=None, response={200: PairOut})
def pair(request, body: PairIn):
    if len(body.code) > 64:
        return error_response(400, "invalid_code", MESSAGES["invalid_code"], [{"field": "code", "message": "too long"}])
    try:
        paired = exchange(body.code, source_key(request.META.get("REMOTE_ADDR", "")))
    except PairingError as exc:
        response = error_response(exc.status, exc.code, MESSAGES[exc.code], [{"field": "code", "message": MESSAGES[exc.code]}])
        if exc.status == 429:
            response["Retry-After"] = "60"
        return response
    return Status(200, {"token": paired.token, "device": paired.device.hardware_id, "kind": paired.device.kind})

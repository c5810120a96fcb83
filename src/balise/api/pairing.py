"""POST /api/v1/pair: a device exchanges the one-time code shown in the console for its
token. The only device endpoint without a token (the code is the credential)."""

from __future__ import annotations

from ninja import Router, Schema, Status

from balise.api.errors import error_response
from balise.api.schemas import ErrorOut
from balise.console.pairing import PairingError, exchange
from balise.staff.network import client_ip
from balise.throttle import source_key

router = Router(tags=["pairing"])

# 400 wrong code, 410 expired code, 429 too many wrong codes; and what every route may
# answer: 413 body too large, 422 invalid body, 503 database busy.
ERRORS = {code: ErrorOut for code in (400, 410, 413, 422, 429, 503)}

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


@router.post("/pair", auth=None, response={200: PairOut, **ERRORS}, summary="Exchange a pairing code for a device token")
def pair(request, body: PairIn):
    if len(body.code) > 64:
        return error_response(400, "invalid_code", MESSAGES["invalid_code"], [{"field": "code", "message": "too long"}])
    try:
        # (the client behind the trusted proxies, as for staff logins: not the proxy itself)
        paired = exchange(body.code, source_key(client_ip(request) or ""))
    except PairingError as exc:
        response = error_response(exc.status, exc.code, MESSAGES[exc.code], [{"field": "code", "message": MESSAGES[exc.code]}])
        if exc.status == 429:
            response["Retry-After"] = "60"
        return response
    return Status(200, {"token": paired.token, "device": paired.device.hardware_id, "kind": paired.device.kind})

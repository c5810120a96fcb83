"""Every API error is JSON: {"error": code, "message": text, "fields": [{field, message}]}."""

from __future__ import annotations

from django.http import JsonResponse


def error_response(status: int, code: str, message: str, fields: list[dict] | None = None) -> JsonResponse:
    body = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


def validation_fields(errors: list[dict]) -> list[dict]:
    out = []
    for err in errors:
        # ninja's loc starts with the parameter source ("body", "path", ...) and the
        # schema argument name; keep what names the field in the client's JSON.
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "path", "query", "header"):
            loc = loc[2:] if len(loc) > 2 else loc[1:]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out

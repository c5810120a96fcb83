"""Client of the Balise device API (``/api/v1``), the contract every device speaks.

Each call returns an ``ApiResult`` that says what the caller should do:
``OK``; ``RETRY`` (connection error, timeout, 5xx, 408, 429: try again
later); ``PERMANENT`` (any other 4xx: retrying would get the same answer).
The device token is sent as a Bearer header and never logged.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import httpx

from balise_station import __version__


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class ApiResult:
    outcome: Outcome
    status: int | None = None
    body: Any = None
    error: str = ""
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    if status in (408, 429) or status >= 500 or status < 200:
        return Outcome.RETRY
    if 400 <= status < 500:
        return Outcome.PERMANENT
    return Outcome.RETRY  # 3xx: a proxy in the way; it may go away


class DeviceApi:
    def __init__(self, base_url: str, token: str, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"balise-station/{__version__}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            transport=transport,
            follow_redirects=False,
        )

    def set_token(self, token: str) -> None:
        """The station was paired again: the new token from now on."""
        self._client.headers["Authorization"] = f"Bearer {token}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> ApiResult:
        extra: dict[str, Any] = {}
        if timeout_s is not None:
            extra["timeout"] = httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0))
        try:
            resp = await self._client.request(method, path, json=body, **extra)
        except httpx.TimeoutException:
            return ApiResult(Outcome.RETRY, error="timeout")
        except httpx.HTTPError as exc:
            return ApiResult(Outcome.RETRY, error=f"connection: {type(exc).__name__}")
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        outcome = classify(resp.status_code)
        error = ""
        if outcome is not Outcome.OK:
            code = data.get("error") if isinstance(data, dict) else None
            error = f"HTTP {resp.status_code}" + (f" {code}" if code else "")
        elif data is None:
            return ApiResult(Outcome.RETRY, resp.status_code, None, "response is not JSON")
        return ApiResult(outcome, resp.status_code, data, error, _retry_after(resp))

    async def post_alert(self, payload: dict[str, Any]) -> ApiResult:
        return await self._call("POST", "/alerts", payload)

    async def post_fixes(self, client_id: str, fixes: list[dict[str, Any]]) -> ApiResult:
        return await self._call("POST", f"/alerts/{client_id}/fixes", {"fixes": fixes})

    async def cancel_alert(self, client_id: str, pin: str) -> ApiResult:
        return await self._call("POST", f"/alerts/{client_id}/cancel", {"pin": pin})

    async def get_alert(self, client_id: str) -> ApiResult:
        return await self._call("GET", f"/alerts/{client_id}")

    async def heartbeat(self, payload: dict[str, Any]) -> ApiResult:
        return await self._call("POST", "/heartbeat", payload)

    async def contacts(self, timeout_s: float | None = None) -> ApiResult:
        """The person's contacts and the association's on-call number; also the cheap call
        that checks the server and the token (``server.check_interval_s``)."""
        return await self._call("GET", "/contacts", timeout_s=timeout_s)

    async def evidence_keys(self) -> ApiResult:
        return await self._call("GET", "/evidence/keys")

    async def evidence_key_log(self) -> ApiResult:
        """The platform's signed key log (public; checked by ``balise_station.evidence.refresh_keys``)."""
        return await self._call("GET", "/evidence/key-log")

    async def register_evidence_key(self, public_key_pem: str) -> ApiResult:
        return await self._call("POST", "/evidence/device-key", {"public_key_pem": public_key_pem})


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None

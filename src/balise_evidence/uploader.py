"""Device side of the upload: one idempotent POST per record, a checked receipt back.

The station's durable queue calls ``Uploader.upload`` for the oldest queued record of a
session and acts on the outcome:

- a ``Receipt``: delete the local copy, and pass ``receipt.sha256`` to
  ``Recorder.note_receipt`` while the session is still recording;
- ``UploadRetry``: keep it, try again later (offline, server busy, predecessor missing);
  ``ReceiptKeyUnknown``, a kind of it, when the receipt is not signed by the pinned key:
  the server's signing key may have been rotated (the station reads the key log, and may
  check the same receipt again with ``check_receipt`` once it has re-pinned);
- ``UploadRejected``: the server will never accept this record; keep it aside for the
  association (never silently dropped) and go on with the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .canonical import b64d, canonical, sha256_hex
from .crypto import load_public_pem, verify_ed25519
from .records import SealedUpload

RECORDS_PATH = "evidence/records"


class UploadRetry(Exception):
    """A transient failure: the same upload may succeed later."""


class ReceiptKeyUnknown(UploadRetry):
    """The receipt is for this record but not signed by the pinned server key."""

    def __init__(self, receipt: "Receipt | None", message: str = "the receipt is not signed by the pinned server key"):
        super().__init__(message)
        self.receipt = receipt


class UploadRejected(Exception):
    """A permanent refusal; ``code`` and ``field`` come from the server's JSON error."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.field = status, code, field


@dataclass(frozen=True)
class Receipt:
    body: dict
    signature: bytes
    duplicate: bool

    @property
    def data(self) -> bytes:
        return canonical(self.body)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)


class Uploader:
    """Posts sealed uploads to ``{base_url}/evidence/records`` with the device token.

    ``server_signing_pem`` (from ``GET /evidence/keys``, pinned at enrolment) makes the
    uploader check every receipt's signature before the caller deletes anything."""

    def __init__(self, base_url: str, token: str, server_signing_pem: str | None = None,
                 client: httpx.Client | None = None, timeout: float = 10.0):
        self._url = f"{base_url.rstrip('/')}/{RECORDS_PATH}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = client or httpx.Client(timeout=timeout)
        self._server_key = load_public_pem(server_signing_pem) if server_signing_pem else None

    def upload(self, upload: SealedUpload) -> Receipt:
        try:
            response = self._client.post(self._url, json=upload.to_json(), headers=self._headers)
        except httpx.HTTPError as exc:
            raise UploadRetry(f"network: {type(exc).__name__}") from exc
        return self.receipt_from(response.status_code, _json(response), upload)

    def receipt_from(self, status: int, body: dict, upload: SealedUpload) -> Receipt:
        if status >= 500 or status in (408, 429):
            raise UploadRetry(f"server answered {status}")
        if status >= 400:
            if body.get("retry"):
                raise UploadRetry(f"{body.get('error')}: {body.get('message')}")
            fields = body.get("fields") or [{}]
            raise UploadRejected(status, str(body.get("error", "refused")), str(body.get("message", "")),
                                 fields[0].get("field"))
        try:
            receipt = Receipt(body["receipt"], b64d(body["signature"]), bool(body.get("duplicate")))
        except (KeyError, TypeError, ValueError) as exc:
            raise UploadRetry("the server's answer is not a receipt") from exc
        return self.check_receipt(receipt, upload)

    def check_receipt(self, receipt: Receipt, upload: SealedUpload) -> Receipt:
        """The receipt, if it is for ``upload`` and signed by the pinned key."""
        record = receipt.body.get("record") if isinstance(receipt.body, dict) else None
        if not isinstance(record, dict) or record.get("sha256") != upload.sha256:
            raise UploadRetry("the receipt is for another record")
        if self._server_key is not None and not verify_ed25519(self._server_key, receipt.signature, receipt.data):
            raise ReceiptKeyUnknown(receipt)
        return receipt


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

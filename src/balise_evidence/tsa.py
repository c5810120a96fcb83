"""RFC 3161 timestamps from a configured authority, through ``openssl ts`` and HTTP."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx


class TimestampError(Exception):
    pass


def _openssl(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["openssl", "ts", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TimestampError(f"openssl ts failed: {exc}") from exc


def request(data: bytes, url: str, ca_file: str = "", cert_file: str = "", timeout: float = 10.0) -> bytes:
    """A time-stamp response (DER) for ``data`` from the authority at ``url``; checked
    with ``openssl ts -verify`` against ``ca_file`` when one is given."""
    with tempfile.TemporaryDirectory() as tmp:
        subject, query = Path(tmp) / "subject", Path(tmp) / "query.tsq"
        subject.write_bytes(data)
        done = _openssl("-query", "-data", str(subject), "-sha256", "-cert", "-out", str(query))
        if done.returncode != 0:
            raise TimestampError("openssl ts -query failed")
        try:
            response = httpx.post(url, content=query.read_bytes(), timeout=timeout,
                                  headers={"Content-Type": "application/timestamp-query"})
        except httpx.HTTPError as exc:
            raise TimestampError(f"the timestamp authority is unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise TimestampError(f"the timestamp authority answered {response.status_code}")
        token = Path(tmp) / "reply.tsr"
        token.write_bytes(response.content)
        if ca_file:
            verify(subject, token, ca_file, cert_file)
        return response.content


def verify(subject: Path, token: Path, ca_file: str, cert_file: str = "") -> None:
    args = ["-verify", "-data", str(subject), "-in", str(token), "-CAfile", ca_file]
    if cert_file:
        args += ["-untrusted", cert_file]
    done = _openssl(*args)
    if done.returncode != 0 or b"Verification: OK" not in done.stdout:
        raise TimestampError("the timestamp token does not verify")

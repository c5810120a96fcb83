"""Evidence configuration and keys, from the environment or files (NAME or NAME_FILE).

Keys: BALISE_EVIDENCE_MASTER_KEY (32 bytes, base64), BALISE_EVIDENCE_SEAL_KEY (X25519,
PEM), BALISE_EVIDENCE_SIGNING_KEY and BALISE_EVIDENCE_EXPORT_KEY (Ed25519, PEM). A key
left unset is created once, mode 0600, under BALISE_DATA_DIR/evidence-keys/ so that a
fresh install works; production sets them (or their *_FILE) from its secret store.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from balise.settings import env, env_int
from balise_evidence import crypto


@dataclass(frozen=True)
class Keys:
    master: bytes
    seal: crypto.SealKey
    signer: crypto.Signer
    exporter: crypto.Signer


def _stored(name: str, make) -> str:
    """A key from NAME / NAME_FILE, else created once in the data directory."""
    value = env(name)
    if value:
        return value
    folder = Path(settings.DATA_DIR) / "evidence-keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name.lower()
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def keys() -> Keys:
    return _keys(env("BALISE_EVIDENCE_MASTER_KEY"), env("BALISE_EVIDENCE_SEAL_KEY"), str(settings.DATA_DIR))


@lru_cache(maxsize=4)
def _keys(_master: str, _seal: str, _data_dir: str) -> Keys:
    try:
        master = base64.b64decode(_stored("BALISE_EVIDENCE_MASTER_KEY",
                                          lambda: base64.b64encode(os.urandom(32)).decode()), validate=True)
    except ValueError:
        raise crypto.CryptoError("BALISE_EVIDENCE_MASTER_KEY must be 32 bytes in base64") from None
    if len(master) != 32:
        raise crypto.CryptoError("BALISE_EVIDENCE_MASTER_KEY must be 32 bytes in base64")
    return Keys(
        master=master,
        seal=crypto.SealKey.from_pem(_stored("BALISE_EVIDENCE_SEAL_KEY", lambda: crypto.SealKey.generate().to_pem())),
        signer=crypto.Signer.from_pem(_stored("BALISE_EVIDENCE_SIGNING_KEY", lambda: crypto.Signer.generate().to_pem())),
        exporter=crypto.Signer.from_pem(_stored("BALISE_EVIDENCE_EXPORT_KEY", lambda: crypto.Signer.generate().to_pem())),
    )


def tsa_interval_seconds() -> int:
    """While a recording is open, the head of its log is timestamped at most this often
    (by each received record and by ``balise evidence sweep``), and at close."""
    return env_int("BALISE_EVIDENCE_TSA_INTERVAL", 60)


def silence_seconds() -> int:
    """A recording silent this long without a close record gets a truncation notice."""
    return env_int("BALISE_EVIDENCE_SILENCE_SECONDS", 900)


def deletion_delay_seconds(by_device: bool) -> int:
    """Deletion is never immediate: staff wait 7 days by default, a device's request 30."""
    if by_device:
        return env_int("BALISE_EVIDENCE_DEVICE_DELETION_DELAY", 30 * 86400)
    return env_int("BALISE_EVIDENCE_DELETION_DELAY", 7 * 86400)


def max_segment_bytes() -> int:
    return env_int("BALISE_EVIDENCE_MAX_SEGMENT_BYTES", 40 * 1024)


@dataclass(frozen=True)
class TSA:
    url: str
    ca_file: str
    cert_file: str


def tsa() -> TSA | None:
    """The RFC 3161 authority, if BALISE_EVIDENCE_TSA_URL is set (with its CA and
    certificate files, to check every token and to ship them in exports)."""
    url = env("BALISE_EVIDENCE_TSA_URL")
    if not url:
        return None
    return TSA(url, env("BALISE_EVIDENCE_TSA_CA_FILE"), env("BALISE_EVIDENCE_TSA_CERT_FILE"))

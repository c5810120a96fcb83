"""Key history: the server's evidence keys rotate, every past key stays known.

The current keys come from the environment or the data directory (``conf.keys``). Each
one is recorded once in ``ServerKey`` (private key wrapped under the master key) and in
the platform's key log (``KeyLogEntry``, see ``balise_evidence.keylog``): a new signing
key is introduced by an entry signed by the previous one. ``rotate`` replaces a key kept
in the data directory; a key set in the environment is rotated by changing it there (the
previous one is still in ``ServerKey``, so its past cases still open and verify).
"""

from __future__ import annotations

import os
from datetime import timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from balise.settings import env
from balise_evidence import crypto, keylog, ledger

from . import conf
from .models import DeviceKey, KeyLogEntry, ServerKey

ENV = {"signing": "BALISE_EVIDENCE_SIGNING_KEY", "export": "BALISE_EVIDENCE_EXPORT_KEY",
       "seal": "BALISE_EVIDENCE_SEAL_KEY"}
KINDS = {"signing": crypto.Signer, "export": crypto.Signer, "seal": crypto.SealKey}


class KeyringError(Exception):
    pass


def _now_text() -> str:
    return timezone.now().astimezone(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _wrap(master: bytes, role: str, pem: str) -> bytes:
    return crypto.seal_blob(master, f"server-key|{role}".encode(), pem.encode())


def _unwrap(master: bytes, row: ServerKey):
    pem = crypto.open_blob(master, f"server-key|{row.role}".encode(), bytes(row.private_wrapped))
    return KINDS[row.role].from_pem(pem)


def _append(role: str, fingerprint: str, public_pem: str, signer: crypto.Signer) -> None:
    """Add one key to the key log (once: a key already listed is left alone)."""
    for _attempt in range(5):
        try:
            with transaction.atomic():
                if KeyLogEntry.objects.filter(role=role, fingerprint=fingerprint).exists():
                    return
                last = KeyLogEntry.objects.order_by("-index").first()
                head = ledger.Head(last.index, last.sha256) if last else ledger.Head()
                entry = keylog.append(head, keylog.body(role=role, fingerprint=fingerprint, public_pem=public_pem,
                                                        at=_now_text()), signer)
                KeyLogEntry.objects.create(index=entry.body["index"], role=role, fingerprint=fingerprint,
                                           data=entry.data, sha256=entry.sha256, signature=entry.signature)
                return
        except IntegrityError:
            continue  # another process appended meanwhile: read the new head and try again
    raise KeyringError("the key log is busy")


def _record(role: str, pair, master: bytes, introducer: crypto.Signer) -> None:
    with transaction.atomic():
        if not ServerKey.objects.filter(fingerprint=pair.fingerprint).exists():
            ServerKey.objects.filter(role=role, retired_at__isnull=True).update(retired_at=timezone.now())
            try:
                with transaction.atomic():
                    ServerKey.objects.create(role=role, fingerprint=pair.fingerprint, public_pem=pair.public_pem,
                                             private_wrapped=_wrap(master, role, pair.to_pem()))
            except IntegrityError:
                pass
    _append(role, pair.fingerprint, pair.public_pem, introducer)


def sync() -> conf.Keys:
    """The current keys, each recorded in the key history and the key log."""
    k = conf.keys()
    current = {"signing": k.signer, "export": k.exporter, "seal": k.seal}
    known = set(KeyLogEntry.objects.filter(fingerprint__in=[p.fingerprint for p in current.values()])
                .values_list("fingerprint", flat=True))
    if len(known) < len(current):
        if k.signer.fingerprint not in known:
            # A new signing key is introduced by the one in force before it (itself, for the first).
            previous = ServerKey.objects.filter(role="signing", retired_at__isnull=True).exclude(
                fingerprint=k.signer.fingerprint).order_by("-created_at").first()
            introducer = _unwrap(k.master, previous) if previous is not None else k.signer
            _record("signing", k.signer, k.master, introducer)
        for role in ("export", "seal"):
            if current[role].fingerprint not in known:
                _record(role, current[role], k.master, k.signer)
    for device_key in DeviceKey.objects.exclude(
            fingerprint__in=KeyLogEntry.objects.filter(role="device").values("fingerprint")):
        _append("device", device_key.fingerprint, device_key.public_key_pem, k.signer)
    return k


def add_device(device_key: DeviceKey) -> None:
    _append("device", device_key.fingerprint, device_key.public_key_pem, sync().signer)


def seal_for(fingerprint: str) -> crypto.SealKey:
    """The seal key (current or retired) a session was sealed to."""
    k = sync()
    if fingerprint == k.seal.fingerprint:
        return k.seal
    row = ServerKey.objects.filter(role="seal", fingerprint=fingerprint).first()
    if row is None:
        raise KeyringError("the session is sealed to a key this server never had")
    return _unwrap(k.master, row)


def public_pem(fingerprint: str) -> str:
    row = ServerKey.objects.filter(fingerprint=fingerprint).first()
    if row is None:
        raise KeyringError("unknown server key")
    return row.public_pem


def document() -> bytes:
    sync()
    return keylog.document([(bytes(e.data), bytes(e.signature)) for e in KeyLogEntry.objects.order_by("index")])


def url() -> str:
    return f"{settings.SITE_URL}/api/v1/evidence/key-log"


def rotate(role: str) -> str:
    """Replace the ROLE key kept in the data directory by a new one; returns its fingerprint."""
    if role not in ENV:
        raise KeyringError(f"unknown key {role!r} (signing, export or seal)")
    if env(ENV[role]):
        raise KeyringError(f"{ENV[role]} is set in the environment: set the new key there and restart "
                        f"(the previous one stays in the key history)")
    sync()  # the outgoing key is recorded (with its private key) before it is replaced
    new = KINDS[role].generate()
    path = Path(settings.DATA_DIR) / "evidence-keys" / ENV[role].lower()
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new.to_pem())
    os.replace(partial, path)
    conf._keys.cache_clear()
    sync()
    return new.fingerprint

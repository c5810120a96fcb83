#!/usr/bin/env python3
"""Reference verifier of a Balise evidence package (a BagIt bag, zipped or not).

Self-contained on purpose: it needs only the Python standard library and the
``cryptography`` package, so that a court expert can read it in full and run it with
no Balise installation. ``openssl`` is used, when present, to check RFC 3161 tokens.
Obtain it from the project's published release (and check its hash), never from inside
a package: a package can carry anything.

    python3 verify_balise.py PACKAGE.zip --trust-url URL --pin FINGERPRINT [--tsa-root CA.pem]
    python3 verify_balise.py PACKAGE.zip --trust-log key-log.json --pin FINGERPRINT
    python3 verify_balise.py PACKAGE.zip --trust FP --trust FP ... [--json]

Trust anchors come from outside the package: the platform's signed, append-only key log
(fetched from the association's published URL, or a copy of it, checked against the
fingerprint of its first signing key, which the association publishes out of band), or
the fingerprints themselves. Without them the package is only consistent with itself and
the verdict is NON ANCRÉ / NOT ANCHORED (exit 4), never INTÈGRE.

Exit status: 0 intact and complete, 3 intact but truncated (a server-signed truncation
notice says where the recording was cut), 1 altered or invalid, 2 unreadable package,
4 not anchored (no trust anchor given).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import base64
import subprocess
import sys
import tempfile
import urllib.request
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ZERO = "0" * 64
HEX64 = re.compile(r"^[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COMPLETE, TRUNCATED, ALTERED, UNREADABLE, NOT_ANCHORED = 0, 3, 1, 2, 4
KEY_LOG_FORMAT = "balise-key-log/1"
ROLES = ("signing", "export", "seal", "device")


# --- record header shape (shared with the server's intake) ---------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_hex(v) -> bool:
    return isinstance(v, str) and bool(HEX64.match(v))


COMMON = {
    "v": lambda v: v == 1,
    "kind": lambda v: v in ("open", "segment", "close"),
    "session": lambda v: isinstance(v, str) and bool(UUID.match(v)),
    "seq": lambda v: _is_int(v) and 0 <= v < 2**31,
    "prev": _is_hex,
    "device_key": _is_hex,
    "wall_us": lambda v: _is_int(v) and 0 <= v < 2**53,
    "mono_us": lambda v: _is_int(v) and 0 <= v < 2**53,
    "receipt": lambda v: v is None or _is_hex(v),
}
BY_KIND = {
    "open": {
        "server_key": _is_hex,
        "sealed_key": lambda v: isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("alg", "epk", "nonce", "ct")),
        "alert": lambda v: v is None or (isinstance(v, str) and len(v) <= 64),
        "format": lambda v: isinstance(v, dict) and v.get("container") == "ogg" and v.get("codec") == "opus",
    },
    "segment": {
        "offset": lambda v: _is_int(v) and 0 <= v < 2**53,
        "audio_len": lambda v: _is_int(v) and 0 < v < 2**31,
        "audio_sha256": _is_hex,
        "cipher_len": lambda v: _is_int(v) and 0 < v < 2**31,
        "cipher_sha256": _is_hex,
        "nonce": lambda v: isinstance(v, str) and len(v) == 16,
        "granule_start": lambda v: _is_int(v) and 0 <= v < 2**53,
        "granule_end": lambda v: _is_int(v) and 0 <= v < 2**53,
    },
    "close": {
        "stream_len": lambda v: _is_int(v) and 0 <= v < 2**53,
        "stream_sha256": _is_hex,
        "segments": lambda v: _is_int(v) and 0 <= v < 2**31,
        "reason": lambda v: isinstance(v, str) and len(v) <= 64,
    },
}


def header_problems(header) -> list[tuple[str, str]]:
    """(field, message) for every missing, unexpected or malformed field of a header."""
    if not isinstance(header, dict):
        return [("header", "must be a JSON object")]
    problems = []
    spec = dict(COMMON)
    kind = header.get("kind")
    spec.update(BY_KIND.get(kind, {}))
    for name, ok in spec.items():
        if name not in header:
            problems.append((name, "missing"))
        elif not ok(header[name]):
            problems.append((name, "invalid value"))
    for name in sorted(set(header) - set(spec)):
        problems.append((name, "unexpected field"))
    if not problems:
        if kind == "open" and (header["seq"] != 0 or header["prev"] != ZERO):
            problems.append(("seq", "an open record has seq 0 and a zero prev"))
        if kind != "open" and header["seq"] == 0:
            problems.append(("seq", "only the open record has seq 0"))
    return problems


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is the RFC 8785 form of its JSON value. Balise headers and
    entries hold only strings, integers, booleans, null, lists and objects with ASCII
    keys, for which RFC 8785 is exactly this compact, key-sorted form."""
    try:
        value = json.loads(data)
    except ValueError:
        return False
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == data


# --- findings ------------------------------------------------------------------------

@dataclass
class Finding:
    level: str  # error | warning | info
    code: str
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def error(self, code: str, message: str) -> None:
        self.findings.append(Finding("error", code, message))

    def warn(self, code: str, message: str) -> None:
        self.findings.append(Finding("warning", code, message))

    def info(self, code: str, message: str) -> None:
        self.findings.append(Finding("info", code, message))

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings if f.level != "info"}

    @property
    def status(self) -> int:
        if any(f.level == "error" for f in self.findings):
            return ALTERED
        if not self.facts.get("anchored"):
            return NOT_ANCHORED
        return TRUNCATED if self.facts.get("truncated") else COMPLETE

    @property
    def verdict(self) -> str:
        return {
            COMPLETE: "INTÈGRE ET COMPLET / INTACT AND COMPLETE",
            TRUNCATED: "INTÈGRE MAIS TRONQUÉ (avis de troncature signé) / INTACT BUT TRUNCATED (signed truncation notice)",
            ALTERED: "ALTÉRÉ OU INVALIDE / ALTERED OR INVALID",
            NOT_ANCHORED: "NON ANCRÉ : aucune empreinte de confiance obtenue hors du paquet (--trust-url, "
                          "--trust-log ou --trust) ; le paquet n'est cohérent qu'avec lui-même / NOT ANCHORED: no "
                          "trust anchor from outside the package; it is only consistent with itself",
        }[self.status]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(key) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _load_key(report: Report, path: Path, kind):
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        report.error("key.unreadable", f"{path.name}: {exc}")
        return None
    if not isinstance(key, kind):
        report.error("key.unreadable", f"{path.name}: not the expected kind of key")
        return None
    return key


def _ed_ok(key, sig: bytes, data: bytes) -> bool:
    try:
        key.verify(sig, data)
        return True
    except (InvalidSignature, ValueError):
        return False


def _ec_ok(key, sig: bytes, data: bytes) -> bool:
    try:
        key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


# --- trust anchors (from outside the package) -----------------------------------------

class AnchorError(Exception):
    """A key log that cannot be trusted: unreadable, broken chain, bad signature, wrong pin."""


@dataclass
class Anchors:
    """Fingerprints the expert trusts, by role (``any`` for fingerprints given by hand)."""
    roles: dict = field(default_factory=lambda: {r: set() for r in (*ROLES, "any")})
    source: str = ""

    def __bool__(self) -> bool:
        return any(self.roles.values())

    def allows(self, role: str, fp: str) -> bool:
        return fp in self.roles.get(role, set()) or fp in self.roles["any"]

    @classmethod
    def of(cls, fingerprints) -> "Anchors":
        anchors = cls(source="--trust")
        anchors.roles["any"] |= {f.strip().lower() for f in fingerprints if f.strip()}
        return anchors


@dataclass(frozen=True)
class LoggedKey:
    """One key listed in the key log, at ``index``."""
    index: int
    role: str
    fingerprint: str
    public_pem: str


@dataclass(frozen=True)
class KeyLog:
    """The entries of a checked key log that the pinned signing key vouches for, and the
    log's length and head (hash of its last entry)."""
    keys: list
    length: int
    head: str


def read_key_log(data: bytes, pin: str, *, pin_anywhere: bool = False) -> KeyLog:
    """Check the platform's key log: its hash chain, and that every entry is signed by the
    signing key in force at that point (the first one by itself), so that a new signing
    key is introduced by a signature of the previous one.

    ``pin`` is a signing key's fingerprint obtained out of band. By default (the expert's
    ``--pin``) it must be the log's first key, and every entry is returned. With
    ``pin_anywhere`` (a station that pinned the signing key in force when it enrolled)
    it may be any signing key of the chain; only the entries from its introduction on
    are returned: each of them is signed by the pinned key or by a key it introduced,
    directly or through its successors, whoever wrote the entries before it."""
    pin = pin.strip().lower()
    try:
        doc = json.loads(data)
        items = doc["entries"]
        if doc.get("format") != KEY_LOG_FORMAT or not isinstance(items, list) or not items:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise AnchorError("the key log is not a Balise key log") from None
    listed: list[LoggedKey] = []
    keys: dict[str, object] = {}
    current = None
    vouched_from = None
    prev = ZERO
    for index, item in enumerate(items):
        try:
            raw = item["data"].encode("utf-8")
            sig = base64.b64decode(item["signature"], validate=True)
            body = json.loads(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AnchorError(f"key log entry {index} is unreadable") from None
        if not is_canonical(raw) or body.get("index") != index or body.get("prev") != prev:
            raise AnchorError(f"key log entry {index}: the hash chain is broken")
        role, fp = body.get("role"), str(body.get("fingerprint", ""))
        if role not in ROLES or not HEX64.match(fp):
            raise AnchorError(f"key log entry {index}: unknown role or malformed fingerprint")
        try:
            key = serialization.load_pem_public_key(str(body.get("public_pem", "")).encode())
        except ValueError:
            raise AnchorError(f"key log entry {index}: unreadable public key") from None
        if _fingerprint(key) != fp:
            raise AnchorError(f"key log entry {index}: the public key does not have the fingerprint listed")
        if index == 0:
            if role != "signing" or (fp != pin and not pin_anywhere):
                raise AnchorError("the key log does not start with the pinned signing key "
                                  "(wrong --pin, or not the platform's key log)")
            current = key
        signer = keys.get(body.get("signer")) if index else current
        if signer is None or signer is not current or not _ed_ok(signer, sig, raw):
            raise AnchorError(f"key log entry {index}: not signed by the signing key in force")
        keys[fp] = key
        if vouched_from is None and role == "signing" and fp == pin:
            vouched_from = index
        if vouched_from is not None:
            listed.append(LoggedKey(index, role, fp, str(body["public_pem"])))
        if role == "signing" and body.get("action", "add") == "add":
            current = key
        prev = hashlib.sha256(raw).hexdigest()
    if vouched_from is None:
        raise AnchorError("the pinned signing key is not in the key log")
    return KeyLog(listed, len(items), prev)


def anchors_from_key_log(data: bytes, pin: str) -> Anchors:
    """Check the platform's key log (``read_key_log``, pinned to its first signing key,
    obtained by the expert out of band) and return every key it lists."""
    log = read_key_log(data, pin)
    anchors = Anchors(source=f"key log ({log.length} entries, head {log.head})")
    for entry in log.keys:
        anchors.roles[entry.role].add(entry.fingerprint)
    return anchors


def fetch(url: str) -> bytes:
    """The key log at ``url`` (https://, http:// or file://)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read(8 << 20)
    except (OSError, ValueError) as exc:
        raise AnchorError(f"cannot fetch {url}: {exc}") from None


# --- the checks ----------------------------------------------------------------------

def check_bag(report: Report, root: Path) -> None:
    if not (root / "bagit.txt").is_file():
        report.error("bag.missing", "bagit.txt is missing: not a BagIt bag")
        return
    for manifest, scope in (("manifest-sha256.txt", "payload"), ("tagmanifest-sha256.txt", "tag")):
        path = root / manifest
        if not path.is_file():
            report.error("bag.missing", f"{manifest} is missing")
            continue
        listed = set()
        for line in path.read_text("utf-8").splitlines():
            if not line.strip():
                continue
            digest, _, name = line.partition(" ")
            name = name.strip().lstrip("*")
            listed.add(name)
            target = root / name
            if ".." in Path(name).parts or not target.is_file():
                report.error("bag.missing", f"{name} is listed in {manifest} but absent")
            elif sha256_file(target) != digest.lower():
                report.error("bag.manifest", f"{name} does not match its SHA-256 in {manifest}")
        if scope == "payload":
            for file in sorted((root / "data").rglob("*")):
                rel = file.relative_to(root).as_posix()
                if file.is_file() and rel not in listed:
                    report.error("bag.unlisted", f"{rel} is in the package but not in {manifest}")


def check_export_signature(report: Report, root: Path, trusted: Anchors) -> None:
    key = _load_key(report, root / "data/keys/export.pem", ed25519.Ed25519PublicKey)
    sig = root / "tagmanifest-sha256.txt.sig"
    if key is None or not sig.is_file():
        report.error("export.signature", "the export signature or the export key is missing")
        return
    fp = _fingerprint(key)
    report.facts["export_key"] = fp
    if trusted and not trusted.allows("export", fp):
        report.error("key.untrusted", f"the export key {fp} is not one of the trusted fingerprints")
    if not _ed_ok(key, sig.read_bytes(), (root / "tagmanifest-sha256.txt").read_bytes()):
        report.error("export.signature", "the tag manifest is not signed by the export key")


def _load_entries(report: Report, folder: Path, signers: dict, what: str) -> list[dict]:
    """Signed, hash-chained entries (log or custody): checks signatures (each by the
    server signing key it names, from data/keys/signing/) and the chain."""
    entries = []
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    prev = ZERO
    for index, path in enumerate(files):
        data = path.read_bytes()
        sig_path = path.with_suffix(".sig")
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            report.error(f"{what}.invalid", f"{path.name} is not a JSON object")
            continue
        key = signers.get(body.get("signer"))
        if not sig_path.is_file() or key is None or not _ed_ok(key, sig_path.read_bytes(), data):
            report.error(f"{what}.signature", f"{what} entry {path.name}: the server signature does not verify")
        if not is_canonical(data):
            report.error(f"{what}.invalid", f"{path.name} is not in canonical form")
        if body.get("index") != index or body.get("prev") != prev:
            report.error(f"{what}.chain", f"{what} entry {path.name}: the hash chain is broken here "
                                          f"(index {body.get('index')}, expected {index})")
        body["_sha256"] = hashlib.sha256(data).hexdigest()
        body["_file"] = path.name
        entries.append(body)
        prev = body["_sha256"]
    report.facts[f"{what}_entries"] = len(entries)
    return entries


def _load_records(report: Report, root: Path, device_key, device_fp: str | None) -> list[dict]:
    records = []
    for path in sorted((root / "data/records").glob("*.json")):
        data = path.read_bytes()
        try:
            header = json.loads(data)
        except ValueError:
            report.error("record.invalid", f"{path.name} is not JSON")
            continue
        problems = header_problems(header)
        if problems:
            report.error("record.invalid", f"{path.name}: " + ", ".join(f"{f} {m}" for f, m in problems))
            continue
        if not is_canonical(data):
            report.error("record.invalid", f"{path.name} is not in canonical form")
        name_seq = int(path.name.split("-")[0]) if path.name[:6].isdigit() else None
        if name_seq != header["seq"]:
            report.error("record.misplaced", f"{path.name} holds the record of seq {header['seq']}")
        if device_fp and header["device_key"] != device_fp:
            report.error("key.replaced", f"{path.name} was made with device key {header['device_key'][:16]}…, "
                                         f"not the key in data/keys/device.pem ({device_fp[:16]}…)")
        sig = path.with_suffix(".sig")
        if device_key is None or not sig.is_file() or not _ec_ok(device_key, sig.read_bytes(), data):
            report.error("record.signature", f"{path.name}: the device signature does not verify")
        header["_sha256"] = hashlib.sha256(data).hexdigest()
        header["_file"] = path.name
        records.append(header)
    return records


def _chain(report: Report, records: list[dict], receipts: dict[str, dict]) -> list[dict]:
    """Follow prev hashes from the open record. Another version of a seq already on the
    chain is a flagged conflict if the server said so, an orphan otherwise."""
    by_prev: dict[str, list[dict]] = {}
    for r in records:
        by_prev.setdefault(r["prev"], []).append(r)
    opens = [r for r in records if r["kind"] == "open"]
    if not opens:
        report.error("chain.open", "there is no open record: the start of the recording is not proven")
        return []
    if len(opens) > 1:
        report.warn("record.conflict", f"{len(opens)} versions of the open record")
    chain = [opens[0]]
    while chain[-1]["kind"] != "close":
        nexts = by_prev.get(chain[-1]["_sha256"], [])
        if not nexts:
            break
        # Prefer the version that the chain goes on from, then the first received.
        nexts.sort(key=lambda r: (not by_prev.get(r["_sha256"]), receipts.get(r["_sha256"], {}).get("index", 1 << 60)))
        nxt = nexts[0]
        if nxt["seq"] != chain[-1]["seq"] + 1:
            report.error("chain.seq", f"{nxt['_file']} follows seq {chain[-1]['seq']} but has seq {nxt['seq']}")
        chain.append(nxt)
    on_chain = {r["_sha256"] for r in chain}
    last = chain[-1]["seq"]
    for r in records:
        if r["_sha256"] in on_chain:
            continue
        receipt = receipts.get(r["_sha256"])
        if receipt and receipt.get("conflict"):
            report.warn("record.conflict", f"{r['_file']}: a second, different version of seq {r['seq']}, "
                                           f"kept and flagged by the server")
        elif r["seq"] > last:
            report.error("chain.gap", f"the chain breaks after seq {last}: record {r['_file']} does not "
                                      f"follow from it (a record is missing, reordered or inserted)")
        else:
            report.error("chain.orphan", f"{r['_file']} is not on the hash chain (inserted or altered)")
    return chain


def _signing_keys(report: Report, root: Path) -> dict:
    """The server signing keys shipped in data/keys/signing/, by fingerprint (the file
    name must be the key's own fingerprint)."""
    keys = {}
    folder = root / "data/keys/signing"
    for path in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
        key = _load_key(report, path, ed25519.Ed25519PublicKey)
        if key is None:
            continue
        fp = _fingerprint(key)
        if path.stem != fp:
            report.error("key.replaced", f"data/keys/signing/{path.name} holds key {fp[:16]}…, not the one its "
                                         f"name says")
            continue
        keys[fp] = key
    if not keys:
        report.error("key.unreadable", "data/keys/signing/ holds no server signing key")
    return keys


def check_session(report: Report, root: Path, trusted: Anchors) -> None:
    keys = root / "data/keys"
    device_key = _load_key(report, keys / "device.pem", ec.EllipticCurvePublicKey)
    device_fp = _fingerprint(device_key) if device_key else None
    signers = _signing_keys(report, root)
    if trusted and device_fp and not trusted.allows("device", device_fp):
        report.error("key.untrusted", f"the device key {device_fp} is not one of the trusted fingerprints")

    log = _load_entries(report, root / "data/log", signers, "log")
    custody = _load_entries(report, root / "data/custody", signers, "custody")
    used = sorted({str(e.get("signer")) for e in log + custody if str(e.get("signer")) in signers})
    report.facts.update(device_key=device_fp, server_key=", ".join(used))
    for fp in used:
        if trusted and not trusted.allows("signing", fp):
            report.error("key.untrusted", f"the server signing key {fp} is not one of the trusted fingerprints")
    receipts = {e["record"]["sha256"]: e for e in log if e.get("type") == "receipt"}
    for e in log:
        if e.get("type") == "receipt" and device_fp and e.get("device_key") != device_fp:
            report.error("key.replaced", f"log entry {e['_file']}: the server checked device key "
                                         f"{str(e.get('device_key'))[:16]}…, not the one in the package")

    records = _load_records(report, root, device_key, device_fp)
    chain = _chain(report, records, receipts)
    report.facts["records"] = len(records)
    report.facts["segments"] = sum(1 for r in chain if r["kind"] == "segment")
    for r in chain:
        if r["_sha256"] not in receipts:
            report.error("receipt.missing", f"{r['_file']}: no server receipt for this record")

    stream_path = root / "data/audio/stream.opus"
    stream = stream_path.read_bytes() if stream_path.is_file() else b""
    if not stream_path.is_file():
        report.error("stream.missing", "data/audio/stream.opus is missing")
    expected_offset = 0
    for r in chain:
        if r["kind"] != "segment":
            continue
        name = f"seq {r['seq']}"
        if r["offset"] != expected_offset:
            report.error("segment.offset", f"{name}: offset {r['offset']}, expected {expected_offset}")
        audio = stream[r["offset"]: r["offset"] + r["audio_len"]]
        if len(audio) != r["audio_len"] or hashlib.sha256(audio).hexdigest() != r["audio_sha256"]:
            report.error("segment.audio", f"{name}: the audio bytes at offset {r['offset']} do not match "
                                          f"the signed SHA-256")
        cipher = root / f"data/ciphertext/{r['seq']:06d}.bin"
        if not cipher.is_file():
            report.error("segment.cipher", f"{name}: the ciphertext as received is missing")
        elif cipher.stat().st_size != r["cipher_len"] or sha256_file(cipher) != r["cipher_sha256"]:
            report.error("segment.cipher", f"{name}: the stored ciphertext does not match the signed SHA-256")
        expected_offset = r["offset"] + r["audio_len"]
    if len(stream) > expected_offset:
        report.error("stream.extra", f"stream.opus has {len(stream) - expected_offset} bytes that no signed "
                                     f"segment covers")
    report.facts["stream_len"] = len(stream)
    report.facts["stream_sha256"] = hashlib.sha256(stream).hexdigest()

    close = chain[-1] if chain and chain[-1]["kind"] == "close" else None
    notices = [e for e in log if e.get("type") == "truncation"]
    if close:
        if close["stream_len"] != len(stream) or close["stream_sha256"] != report.facts["stream_sha256"]:
            report.error("stream.hash", "the whole stream does not match the SHA-256 in the close record")
        if close["segments"] != report.facts["segments"]:
            report.error("chain.gap", f"the close record counts {close['segments']} segments, the chain has "
                                      f"{report.facts['segments']}")
        report.facts["closed"] = True
        for n in notices:
            report.info("truncation.superseded", f"a truncation notice ({n['at']}) was issued, then the "
                                                 f"delayed records up to the close record arrived")
    elif chain:
        matching = [n for n in notices if n.get("last_record_sha256") == chain[-1]["_sha256"]]
        if matching:
            report.facts["truncated"] = True
            n = matching[-1]
            report.warn("session.truncated", f"TRUNCATED: no close record. The server signed a truncation "
                                             f"notice at {n['at']}: nothing after seq {n['last_seq']} was "
                                             f"received ({n['silence_seconds']} s of silence).")
        else:
            report.error("session.incomplete", f"the chain ends at seq {chain[-1]['seq']} with neither a close "
                                               f"record nor a truncation notice for it")
    report.facts["custody_actions"] = [c.get("action") for c in custody]


def _token_time(token: Path) -> str:
    """The genTime an RFC 3161 token states (``openssl ts -reply -text``), or ''."""
    done = subprocess.run(["openssl", "ts", "-reply", "-in", str(token), "-text"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("Time stamp:"):
            return line.split(":", 1)[1].strip()
    return ""


SUBJECT = re.compile(r"^(manifest-sha256\.txt|data/log/[0-9]{6}\.json)$")


def check_timestamps(report: Report, root: Path, tsa_root: Path | None) -> None:
    """Each RFC 3161 token checked against the authority root the expert supplies
    (never one from the package); the tokens a sealed session must have are flagged
    when missing; the time bounds they prove are reported."""
    tokens = sorted(root.glob("timestamps/*.tsr")) + sorted((root / "data/timestamps").glob("*.tsr"))
    report.facts["timestamps"] = len(tokens)
    if tsa_root is None:
        if tokens:
            report.info("timestamp.unchecked", "RFC 3161 tokens present but not checked: give the timestamp "
                                               "authority's root certificate with --tsa-root")
        return
    if not shutil.which("openssl"):
        report.error("timestamp.unchecked", "openssl is needed to check the RFC 3161 tokens")
        return
    bounds = []
    stamped = set()
    for token in tokens:
        subject_file = token.with_suffix(".subject")
        subject = subject_file.read_text().strip() if subject_file.is_file() else ""
        if not SUBJECT.match(subject) or not (root / subject).is_file():
            report.error("timestamp.invalid", f"{token.name}: the timestamped file is not named or missing")
            continue
        cmd = ["openssl", "ts", "-verify", "-data", str(root / subject), "-in", str(token), "-CAfile", str(tsa_root)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or "Verification: OK" not in done.stdout:
            report.error("timestamp.invalid", f"{token.name}: the RFC 3161 token does not verify for {subject} "
                                              f"against the authority root given")
            continue
        when = _token_time(token)
        stamped.add(subject)
        bounds.append(f"{subject} existed by {when}")
        report.info("timestamp.ok", f"{token.name}: {subject} existed by {when} (RFC 3161)")
    report.facts["timestamp_bounds"] = bounds
    if "manifest-sha256.txt" not in stamped:
        report.error("timestamp.missing", "no valid RFC 3161 token on the export (timestamps/export.tsr)")
    entries = sorted((root / "data/log").glob("*.json")) if (root / "data/log").is_dir() else []
    if entries and (report.facts.get("closed") or report.facts.get("truncated")):
        last = f"data/log/{entries[-1].name}"
        if last not in stamped:
            report.error("timestamp.missing", f"no valid RFC 3161 token on the last log entry ({last}): the close "
                                              f"or truncation time is not attested by the authority")


def check_derived(report: Report, root: Path) -> None:
    """DERIVE-stream.wav decoded again from stream.opus (needs PyAV): same length and the
    same samples, within the rounding of the decoder."""
    wav, stream = root / "data/audio/DERIVE-stream.wav", root / "data/audio/stream.opus"
    if not wav.is_file() or not stream.is_file() or not stream.stat().st_size:
        return
    try:
        import av  # noqa: PLC0415 (optional: the expert may not have it)
    except ImportError:
        report.info("derived.unchecked", "DERIVE-stream.wav not compared with stream.opus (install PyAV to do so)")
        return
    try:
        with wave.open(str(wav), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            derived = w.readframes(w.getnframes())
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        pcm = bytearray()
        with av.open(str(stream), "r") as container:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[: out.samples * 2]
        for out in resampler.resample(None):
            pcm += bytes(out.planes[0])[: out.samples * 2]
    except (OSError, EOFError, wave.Error, ValueError) as exc:
        report.error("derived.mismatch", f"DERIVE-stream.wav or stream.opus cannot be decoded: {exc}")
        return
    if (width, channels) != (2, 1) or abs(len(pcm) - len(derived)) > 2 * rate // 50:
        report.error("derived.mismatch", "DERIVE-stream.wav does not have the length of the decoded stream.opus")
        return
    import array  # noqa: PLC0415
    a, b = array.array("h", bytes(pcm[: len(derived) // 2 * 2])), array.array("h", derived[: len(pcm) // 2 * 2])
    window = rate // 10
    for start in range(0, min(len(a), len(b)), window):
        diff = sum(abs(x - y) for x, y in zip(a[start:start + window], b[start:start + window]))
        if diff > 64 * window:
            report.error("derived.mismatch", f"DERIVE-stream.wav differs from the decoded stream.opus at "
                                             f"{start / rate:.1f} s")
            return
    report.info("derived.ok", "DERIVE-stream.wav is the decoding of stream.opus")


def verify_path(path: Path, trusted=frozenset(), tsa_root: Path | None = None) -> Report:
    """Verify a package (a .zip or a bag directory). ``trusted``: Anchors, or a set of
    fingerprints given by hand; empty means not anchored."""
    path = Path(path)
    anchors = trusted if isinstance(trusted, Anchors) else Anchors.of(trusted)
    if path.is_dir():
        return _verify_dir(path, anchors, tsa_root)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise zipfile.BadZipFile(f"unsafe member name {member!r}")
                z.extractall(tmp)
        except (OSError, zipfile.BadZipFile) as exc:
            report = Report()
            report.error("package.unreadable", f"{path}: {exc}")
            return report
        entries = [p for p in Path(tmp).iterdir()]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
        return _verify_dir(root, anchors, tsa_root)


def _verify_dir(root: Path, trusted: Anchors, tsa_root: Path | None) -> Report:
    report = Report()
    report.facts["anchored"] = bool(trusted)
    report.facts["anchors"] = trusted.source
    check_bag(report, root)
    check_export_signature(report, root, trusted)
    check_session(report, root, trusted)
    check_timestamps(report, root, tsa_root)
    check_derived(report, root)
    return report


def render(report: Report) -> str:
    lines = [f"Verdict : {report.verdict}", ""]
    facts = report.facts
    for label, key in (("Segments", "segments"), ("Flux / stream bytes", "stream_len"),
                       ("SHA-256 du flux / stream", "stream_sha256"), ("Clé appareil / device key", "device_key"),
                       ("Clé serveur / server key", "server_key"), ("Clé d'export / export key", "export_key"),
                       ("Entrées du journal / log entries", "log_entries"),
                       ("Traçabilité / custody entries", "custody_entries"),
                       ("Horodatages / timestamps", "timestamps"), ("Ancrage / anchors", "anchors")):
        if key in facts:
            lines.append(f"  {label}: {facts[key]}")
    lines.append("")
    for f in report.findings:
        lines.append(f"[{f.level.upper()}] {f.code}: {f.message}")
    if not report.findings:
        lines.append("Aucun problème / no problem found.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Balise evidence package offline.")
    parser.add_argument("package", type=Path)
    parser.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT",
                        help="SHA-256 fingerprint of a key the platform published (device, server signing "
                             "and export keys: give them all)")
    parser.add_argument("--trust-url", metavar="URL", help="the platform's published key log")
    parser.add_argument("--trust-log", type=Path, metavar="FILE", help="a copy of the platform's key log")
    parser.add_argument("--pin", metavar="FINGERPRINT",
                        help="fingerprint of the key log's first signing key, obtained out of band")
    parser.add_argument("--tsa-root", type=Path, metavar="CA.pem",
                        help="root certificate of the timestamp authority, obtained out of band")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    if not args.package.exists():
        print(f"error: {args.package} does not exist", file=sys.stderr)
        return UNREADABLE
    if args.tsa_root is not None and not args.tsa_root.is_file():
        print(f"error: {args.tsa_root} does not exist", file=sys.stderr)
        return UNREADABLE
    anchors = Anchors.of(args.trust)
    if args.trust_url or args.trust_log:
        if not args.pin:
            print("error: --trust-url and --trust-log need --pin (the key log's first signing key)", file=sys.stderr)
            return UNREADABLE
        try:
            data = fetch(args.trust_url) if args.trust_url else args.trust_log.read_bytes()
            logged = anchors_from_key_log(data, args.pin)
        except OSError as exc:
            print(f"error: cannot read {args.trust_log}: {exc.strerror}", file=sys.stderr)
            return UNREADABLE
        except AnchorError as exc:
            print(f"NON ANCRÉ / NOT ANCHORED: {exc}", file=sys.stderr)
            return NOT_ANCHORED
        for role, fps in logged.roles.items():
            anchors.roles[role] |= fps
        anchors.source = logged.source
    report = verify_path(args.package, anchors, args.tsa_root)
    if any(f.code == "package.unreadable" for f in report.findings):
        print(f"error: {report.findings[0].message}", file=sys.stderr)
        return UNREADABLE
    if args.json:
        print(json.dumps({"status": report.status, "verdict": report.verdict, "facts": report.facts,
                          "findings": [f.__dict__ for f in report.findings]}, ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return report.status


if __name__ == "__main__":
    sys.exit(main())

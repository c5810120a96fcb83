#!/usr/bin/env python3
"""Reference verifier of a Balise evidence package (a BagIt bag, zipped or not).

Self-contained on purpose: it needs only the Python standard library and the
``cryptography`` package, so that a court expert can read it in full and run it with
no Balise installation. ``openssl`` is used, when present, to check RFC 3161 tokens.

    python3 verify_balise.py PACKAGE.zip [--trust FINGERPRINT ...] [--json]

Exit status: 0 intact and complete, 3 intact but truncated (a server-signed truncation
notice says where the recording was cut), 1 altered or invalid, 2 unreadable package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ZERO = "0" * 64
HEX64 = re.compile(r"^[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COMPLETE, TRUNCATED, ALTERED, UNREADABLE = 0, 3, 1, 2


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
        return TRUNCATED if self.facts.get("truncated") else COMPLETE

    @property
    def verdict(self) -> str:
        return {
            COMPLETE: "INTÈGRE ET COMPLET / INTACT AND COMPLETE",
            TRUNCATED: "INTÈGRE MAIS TRONQUÉ (avis de troncature signé) / INTACT BUT TRUNCATED (signed truncation notice)",
            ALTERED: "ALTÉRÉ OU INVALIDE / ALTERED OR INVALID",
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


def check_export_signature(report: Report, root: Path, trusted: set[str]) -> None:
    key = _load_key(report, root / "data/keys/export.pem", ed25519.Ed25519PublicKey)
    sig = root / "tagmanifest-sha256.txt.sig"
    if key is None or not sig.is_file():
        report.error("export.signature", "the export signature or the export key is missing")
        return
    fp = _fingerprint(key)
    report.facts["export_key"] = fp
    if trusted and fp not in trusted:
        report.error("key.untrusted", f"the export key {fp} is not one of the trusted fingerprints")
    if not _ed_ok(key, sig.read_bytes(), (root / "tagmanifest-sha256.txt").read_bytes()):
        report.error("export.signature", "the tag manifest is not signed by the export key")


def _load_entries(report: Report, folder: Path, key, what: str) -> list[dict]:
    """Signed, hash-chained entries (log or custody): checks signatures and the chain."""
    entries = []
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    prev = ZERO
    for index, path in enumerate(files):
        data = path.read_bytes()
        sig_path = path.with_suffix(".sig")
        try:
            body = json.loads(data)
        except ValueError:
            report.error(f"{what}.invalid", f"{path.name} is not JSON")
            continue
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


def check_session(report: Report, root: Path, trusted: set[str]) -> None:
    keys = root / "data/keys"
    device_key = _load_key(report, keys / "device.pem", ec.EllipticCurvePublicKey)
    server_key = _load_key(report, keys / "server-signing.pem", ed25519.Ed25519PublicKey)
    device_fp = _fingerprint(device_key) if device_key else None
    server_fp = _fingerprint(server_key) if server_key else None
    report.facts.update(device_key=device_fp, server_key=server_fp)
    if trusted and server_fp and server_fp not in trusted:
        report.error("key.untrusted", f"the server key {server_fp} is not one of the trusted fingerprints")

    log = _load_entries(report, root / "data/log", server_key, "log")
    custody = _load_entries(report, root / "data/custody", server_key, "custody")
    for entry in log + custody:
        if server_fp and entry.get("signer") != server_fp:
            report.error("key.replaced", f"{entry['_file']} names signer {str(entry.get('signer'))[:16]}…, "
                                         f"not the server key in the package")
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


def check_timestamps(report: Report, root: Path) -> None:
    tokens = sorted(root.glob("timestamps/*.tsr")) + sorted((root / "data/timestamps").glob("*.tsr"))
    report.facts["timestamps"] = len(tokens)
    if not tokens:
        return
    ca = root / "data/keys/tsa-ca.pem"
    if not shutil.which("openssl") or not ca.is_file():
        report.info("timestamp.unchecked", "RFC 3161 tokens present but not checked (openssl or the TSA "
                                           "certificate is missing)")
        return
    for token in tokens:
        subject = token.with_suffix(".subject").read_text().strip() if token.with_suffix(".subject").is_file() else ""
        data = root / subject
        if not subject or not data.is_file():
            report.error("timestamp.invalid", f"{token.name}: the timestamped file is not named or missing")
            continue
        cmd = ["openssl", "ts", "-verify", "-data", str(data), "-in", str(token), "-CAfile", str(ca)]
        untrusted = root / "data/keys/tsa.pem"
        if untrusted.is_file():
            cmd += ["-untrusted", str(untrusted)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or "Verification: OK" not in done.stdout:
            report.error("timestamp.invalid", f"{token.name}: the RFC 3161 token does not match {subject}")
        else:
            report.info("timestamp.ok", f"{token.name}: RFC 3161 token valid for {subject}")


def verify_path(path: Path, trusted: set[str] = frozenset()) -> Report:
    """Verify a package (a .zip or a bag directory)."""
    path = Path(path)
    if path.is_dir():
        return _verify_dir(path, trusted)
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
        return _verify_dir(root, trusted)


def _verify_dir(root: Path, trusted: set[str]) -> Report:
    report = Report()
    check_bag(report, root)
    check_export_signature(report, root, set(trusted))
    check_session(report, root, set(trusted))
    check_timestamps(report, root)
    return report


def render(report: Report) -> str:
    lines = [f"Verdict : {report.verdict}", ""]
    facts = report.facts
    for label, key in (("Segments", "segments"), ("Flux / stream bytes", "stream_len"),
                       ("SHA-256 du flux / stream", "stream_sha256"), ("Clé appareil / device key", "device_key"),
                       ("Clé serveur / server key", "server_key"), ("Clé d'export / export key", "export_key"),
                       ("Entrées du journal / log entries", "log_entries"),
                       ("Traçabilité / custody entries", "custody_entries"),
                       ("Horodatages / timestamps", "timestamps")):
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
                        help="SHA-256 fingerprint of a key published by the platform (export or server key)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    if not args.package.exists():
        print(f"error: {args.package} does not exist", file=sys.stderr)
        return UNREADABLE
    report = verify_path(args.package, set(args.trust))
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

"""The export package: a BagIt bag (RFC 8493), zipped, whose tag manifest is signed by
the platform's export key (Ed25519).

Layout (payload under ``data/``)::

    LISEZMOI.txt, README.txt          verification instructions (French, English)
    rapport.pdf                       the French report (with the platform's key log)
    case.json                         what the package is about (not signed by the device)
    segments.tsv                      offsets and hashes copied from the signed records
                                      (a convenience: the verifiers read the signed headers)
    audio/stream.opus                 the original Ogg Opus stream, as recorded
    audio/DERIVE-stream.wav           a WAV decoded from it, for listening (derived)
    records/NNNNNN-KIND.json|.sig     every record header and its device signature
    ciphertext/NNNNNN.bin             every segment's ciphertext, as received
    log/NNNNNN.json|.sig              the session log: receipts and truncation notice
    custody/NNNNNN.json|.sig          the custody records of the case
    timestamps/*.tsr|.subject         RFC 3161 tokens on the log, if any
    keys/*.pem                        device, server sealing, export, TSA (for reading)
    keys/signing/FINGERPRINT.pem      every server signing key that signed a log or custody entry
    keys/key-log.json                 a copy of the platform's key log (for reading: the expert
                                      checks against the one the association publishes)

No verifier travels in the package: code inside evidence can be replaced with it. The
expert obtains the verifier (verify_balise.py, verifier_openssl.sh) from the project's
published release and the fingerprints from the association, out of band.

Tag level: ``timestamps/export.tsr`` (an RFC 3161 token on ``manifest-sha256.txt``, if a
TSA is configured) and ``tagmanifest-sha256.txt.sig``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import bagit

from . import instructions, report, verifier
from .audio import opus_to_wav
from .crypto import Signer

# bagit works in the bag's directory (os.chdir, process-wide): one bag at a time, so that
# two exports from a threaded web server never write into each other's directory.
_BAGIT = threading.Lock()


@dataclass(frozen=True)
class Signed:
    data: bytes
    signature: bytes


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    kind: str
    header: bytes
    signature: bytes
    sha256: str
    ciphertext: bytes | None = None
    conflict: bool = False


@dataclass
class ExportInput:
    case: dict
    records: list[StoredRecord]
    stream: bytes
    log: list[Signed]
    custody: list[Signed]
    keys: dict[str, str]  # file name under keys/ -> PEM
    timestamps: list[tuple[str, bytes, str]] = field(default_factory=list)  # (name, token, subject path)
    key_log: bytes = b""  # the platform's key log document (JSON), as published
    key_log_url: str = ""
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _write(root: Path, rel: str, data: bytes | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _stage(inp: ExportInput, stage: Path) -> None:
    """Everything but the report and the instructions, under ``stage/data``."""
    data = stage / "data"
    _write(data, "case.json", json.dumps(inp.case, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    _write(data, "audio/stream.opus", inp.stream)
    _write(data, "audio/DERIVE-stream.wav", opus_to_wav(inp.stream) if inp.stream else b"")
    rows = ["seq\toffset\tlength\taudio_sha256\tcipher_sha256"]
    seen: dict[int, int] = {}
    for r in sorted(inp.records, key=lambda r: (r.seq, r.conflict)):
        n = seen[r.seq] = seen.get(r.seq, 0) + 1
        stem = f"{r.seq:06d}-{r.kind}" + ("" if n == 1 else f"-v{n}")
        _write(data, f"records/{stem}.json", r.header)
        _write(data, f"records/{stem}.sig", r.signature)
        if r.ciphertext is not None:
            _write(data, f"ciphertext/{r.seq:06d}" + ("" if n == 1 else f"-v{n}") + ".bin", r.ciphertext)
        if r.kind == "segment" and n == 1:
            h = json.loads(r.header)
            rows.append(f"{r.seq}\t{h['offset']}\t{h['audio_len']}\t{h['audio_sha256']}\t{h['cipher_sha256']}")
    _write(data, "segments.tsv", "\n".join(rows) + "\n")
    for folder, items in (("log", inp.log), ("custody", inp.custody)):
        for i, item in enumerate(items):
            _write(data, f"{folder}/{i:06d}.json", item.data)
            _write(data, f"{folder}/{i:06d}.sig", item.signature)
    for name, pem in inp.keys.items():
        _write(data, f"keys/{name}", pem)
    if inp.key_log:
        _write(data, "keys/key-log.json", inp.key_log)
    for name, token, subject in inp.timestamps:
        _write(data, f"timestamps/{name}.tsr", token)
        _write(data, f"timestamps/{name}.subject", subject + "\n")


def build(inp: ExportInput, export_signer: Signer, out: Path,
          timestamp: Callable[[bytes], bytes] | None = None) -> Path:
    """Write the zipped, signed bag to ``out``. ``timestamp`` returns an RFC 3161 token
    for the given bytes (the payload manifest), when a TSA is configured."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        _stage(inp, stage)
        facts = verifier.Report()
        verifier.check_session(facts, stage, verifier.Anchors())
        _write(stage / "data", "rapport.pdf", report.render_pdf(inp, facts))
        _write(stage / "data", "LISEZMOI.txt", instructions.french(inp, facts))
        _write(stage / "data", "README.txt", instructions.english(inp, facts))
        name = f"balise-preuve-{inp.case['reference']}"
        bag_dir = Path(tmp) / name
        os.rename(stage / "data", bag_dir)
        with _BAGIT:
            bagit.make_bag(str(bag_dir), _bag_info(inp), checksums=["sha256"])
            # RFC 8493 is BagIt 1.0 (the library writes 0.97): declare it, then re-hash the tag files.
            (bag_dir / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
            bag = bagit.Bag(str(bag_dir))
            bag.save()
        if timestamp is not None:
            _write(bag_dir, "timestamps/export.tsr", timestamp((bag_dir / "manifest-sha256.txt").read_bytes()))
            _write(bag_dir, "timestamps/export.subject", "manifest-sha256.txt\n")
            with _BAGIT:
                bag.save()  # rewrites the tag manifest so that it covers the token
        tagmanifest = (bag_dir / "tagmanifest-sha256.txt").read_bytes()
        (bag_dir / "tagmanifest-sha256.txt.sig").write_bytes(export_signer.sign(tagmanifest))
        out = Path(out)
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(bag_dir.rglob("*")):
                if path.is_file():
                    z.write(path, f"{name}/{path.relative_to(bag_dir).as_posix()}")
        os.replace(partial, out)
    return out


def _bag_info(inp: ExportInput) -> dict:
    return {
        "Source-Organization": inp.case.get("association", "Balise"),
        "External-Identifier": inp.case["reference"],
        "External-Description": "Balise evidence package: signed audio recording, records, receipts, custody "
                                "(paquet de preuve Balise : enregistrement audio signé, reçus, traçabilité)",
        "Bagging-Date": inp.generated_at.date().isoformat(),
        "Balise-Derived-Files": "data/audio/DERIVE-stream.wav (decoded from stream.opus, for listening only)",
    }


def extract(package: Path, into: Path) -> Path:
    """Unzip a package; returns the bag directory."""
    with zipfile.ZipFile(package) as z:
        z.extractall(into)
    dirs = [p for p in Path(into).iterdir() if p.is_dir()]
    return dirs[0]


def rezip(bag_dir: Path, out: Path) -> Path:
    """Zip a bag directory again (used by tests that tamper with an extracted package)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(bag_dir.rglob("*")):
            if path.is_file():
                z.write(path, f"{bag_dir.name}/{path.relative_to(bag_dir).as_posix()}")
    return out


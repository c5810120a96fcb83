"""Record -> export -> verify, offline; and every kind of tampering, named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import bagit
import pytest

from balise_evidence import bag, crypto, verifier
from balise_evidence.canonical import canonical

from .memory import MemoryServer


SCRIPT = Path(verifier.__file__).with_name("verifier_openssl.sh")
TRUST: set[str] = set()


def build_package(server: MemoryServer, out: Path) -> Path:
    server.access("export")
    return bag.build(server.export_input(), server.exporter, out)


@pytest.fixture(scope="module")
def package(tmp_path_factory, device_key, seal_key, recording):
    server = MemoryServer(device_key, seal_key)
    for u in recording:
        server.receive(u)
    server.access("listen")
    path = build_package(server, tmp_path_factory.mktemp("pkg") / "case.zip")
    ANCHOR["server"] = server
    return server, path


@pytest.fixture
def bag_dir(package, tmp_path) -> Path:
    return bag.extract(package[1], tmp_path)


def openssl_check(root: Path, server: MemoryServer | None = None, *extra: str) -> subprocess.CompletedProcess:
    """The published openssl-only procedure, with the fingerprints the expert obtained."""
    s = server or ANCHOR["server"]
    args = ["--export", s.exporter.fingerprint, "--signing", s.signer.fingerprint, "--device", s.device.fingerprint]
    return subprocess.run(["sh", str(SCRIPT), str(root), *args, *extra], capture_output=True, text=True)


ANCHOR: dict = {}


def _verify(root, server: MemoryServer | None = None):
    return verifier.verify_path(root, (server or ANCHOR["server"]).trusted)


def reseal(root: Path) -> None:
    """What an attacker without the export key can do: recompute the BagIt manifests."""
    bagit.Bag(str(root)).save(manifests=True)


def test_complete_package_verifies(package, bag_dir):
    server, path = package
    report = verifier.verify_path(path, server.trusted)
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert report.facts["segments"] == 3 and report.facts["closed"]
    assert bagit.Bag(str(bag_dir)).is_valid()
    names = {p.relative_to(bag_dir).as_posix() for p in bag_dir.rglob("*") if p.is_file()}
    for expected in ("data/audio/stream.opus", "data/audio/DERIVE-stream.wav", "data/rapport.pdf",
                     "data/LISEZMOI.txt", "data/README.txt", "data/records/000000-open.json",
                     "data/records/000004-close.sig", "data/ciphertext/000001.bin", "data/log/000004.json",
                     "data/custody/000001.json", "data/keys/export.pem", "tagmanifest-sha256.txt.sig"):
        assert expected in names
    assert (bag_dir / "data/rapport.pdf").read_bytes().startswith(b"%PDF")
    assert "DÉRIVÉ" in (bag_dir / "data/LISEZMOI.txt").read_text()
    assert (bag_dir / "bagit.txt").read_text().startswith("BagIt-Version: 1.0\n")
    assert not any(name.endswith((".py", ".sh")) for name in names)  # no code travels with the evidence
    done = openssl_check(bag_dir, server)
    assert done.returncode == 0 and "INTACT AND COMPLETE" in done.stdout, done.stdout
    assert "NOT CHECKED BY THIS SCRIPT" in done.stdout
    # The published reference verifier runs standalone (stdlib + cryptography).
    run = subprocess.run(["python3", "-I", verifier.__file__, str(bag_dir), *sum((["--trust", f] for f in server.trusted), [])],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "INTACT AND COMPLETE" in run.stdout, run.stdout + run.stderr


def test_cli_entry_prints_a_verdict(package, capsys):
    trust = sum((["--trust", f] for f in package[0].trusted), [])
    assert verifier.main([str(package[1]), *trust]) == 0
    assert capsys.readouterr().out.startswith("Verdict : INTÈGRE ET COMPLET")
    # Without an anchor from outside the package: never INTÈGRE.
    assert verifier.main([str(package[1])]) == verifier.NOT_ANCHORED
    assert capsys.readouterr().out.startswith("Verdict : NON ANCRÉ")
    assert verifier.main([str(package[1]) + ".missing"]) == verifier.UNREADABLE
    assert verifier.main([str(package[1]), "--trust", "00" * 32]) == verifier.ALTERED


def _codes(root: Path) -> set[str]:
    return _verify(root).codes


def test_flipped_audio_byte(bag_dir):
    stream = bag_dir / "data/audio/stream.opus"
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0x01
    stream.write_bytes(bytes(data))
    assert {"bag.manifest", "segment.audio", "stream.hash"} <= _codes(bag_dir)
    reseal(bag_dir)
    assert {"export.signature", "segment.audio", "stream.hash"} <= _codes(bag_dir)
    out = openssl_check(bag_dir).stdout
    assert "audio of data/records/000002-segment.json" in out and "export signature" in out


def test_reordered_segments(bag_dir):
    recs = bag_dir / "data/records"
    for ext in (".json", ".sig"):
        a, b = recs / f"000002-segment{ext}", recs / f"000003-segment{ext}"
        tmp = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(tmp)
    reseal(bag_dir)
    assert "record.misplaced" in _codes(bag_dir)
    assert openssl_check(bag_dir).returncode == 1


def test_reordered_audio(bag_dir):
    heads = [json.loads((bag_dir / f"data/records/00000{i}-segment.json").read_bytes()) for i in (1, 2, 3)]
    stream = (bag_dir / "data/audio/stream.opus").read_bytes()
    parts = [stream[h["offset"]: h["offset"] + h["audio_len"]] for h in heads]
    (bag_dir / "data/audio/stream.opus").write_bytes(parts[0] + parts[2] + parts[1])
    reseal(bag_dir)
    assert {"segment.audio", "stream.hash"} <= _codes(bag_dir)
    assert "audio of" in openssl_check(bag_dir).stdout


def test_removed_segment(bag_dir):
    h = json.loads((bag_dir / "data/records/000002-segment.json").read_bytes())
    for p in ("records/000002-segment.json", "records/000002-segment.sig", "ciphertext/000002.bin"):
        (bag_dir / "data" / p).unlink()
    stream = (bag_dir / "data/audio/stream.opus").read_bytes()
    (bag_dir / "data/audio/stream.opus").write_bytes(stream[: h["offset"]] + stream[h["offset"] + h["audio_len"]:])
    reseal(bag_dir)
    codes = _codes(bag_dir)
    assert "chain.gap" in codes
    assert "chain at data/records/000003-segment.json" in openssl_check(bag_dir).stdout


def test_inserted_segment(bag_dir):
    forger = crypto.DeviceKey.generate()
    h = json.loads((bag_dir / "data/records/000002-segment.json").read_bytes())
    h["wall_us"] += 1
    data = canonical(h)
    (bag_dir / "data/records/000002-segment-v2.json").write_bytes(data)
    (bag_dir / "data/records/000002-segment-v2.sig").write_bytes(forger.sign(data))
    reseal(bag_dir)
    codes = _codes(bag_dir)
    assert {"record.signature", "chain.orphan"} <= codes
    assert "device signature data/records/000002-segment-v2.json" in openssl_check(bag_dir).stdout


def test_changed_header(bag_dir):
    path = bag_dir / "data/records/000001-segment.json"
    h = json.loads(path.read_bytes())
    h["wall_us"] -= 3_600_000_000  # an hour earlier
    path.write_bytes(canonical(h))
    reseal(bag_dir)
    codes = _codes(bag_dir)
    assert {"record.signature", "receipt.missing"} <= codes
    out = openssl_check(bag_dir).stdout
    assert "device signature data/records/000001-segment.json" in out
    assert "chain at data/records/000002-segment.json" in out


def test_replaced_device_key(bag_dir):
    forger = crypto.DeviceKey.generate()
    (bag_dir / "data/keys/device.pem").write_text(forger.public_pem)
    for path in (bag_dir / "data/records").glob("*.json"):
        path.with_suffix(".sig").write_bytes(forger.sign(path.read_bytes()))
    reseal(bag_dir)
    codes = _codes(bag_dir)
    assert "key.replaced" in codes and "record.signature" not in codes
    assert "export signature" in openssl_check(bag_dir).stdout


def test_replaced_every_key_is_caught_by_the_published_fingerprints(package, bag_dir):
    server, _ = package
    forged = crypto.Signer.generate()
    (bag_dir / "data/keys/export.pem").write_text(forged.public_pem)
    reseal(bag_dir)
    (bag_dir / "tagmanifest-sha256.txt.sig").write_bytes(forged.sign((bag_dir / "tagmanifest-sha256.txt").read_bytes()))
    assert verifier.verify_path(bag_dir).status == verifier.NOT_ANCHORED  # self-consistent, not anchored...
    assert "key.untrusted" in verifier.verify_path(bag_dir, server.trusted).codes  # ...not the platform's key
    assert openssl_check(bag_dir, server).returncode == 1


def test_edited_custody_record(bag_dir):
    path = bag_dir / "data/custody/000000.json"
    c = json.loads(path.read_bytes())
    c["reason"] = "curiosité"
    path.write_bytes(canonical(c))
    reseal(bag_dir)
    assert {"custody.signature", "custody.chain"} <= _codes(bag_dir)
    out = openssl_check(bag_dir).stdout
    assert "server signature data/custody/000000.json" in out and "chain at data/custody/000001.json" in out


def test_truncated_session_exports_as_truncated(tmp_path, device_key, seal_key, recording):
    server = MemoryServer(device_key, seal_key)
    for u in recording[:3]:  # open, segments 1 and 2; then the device disappears
        server.receive(u)
    notice = server.truncate(silence=900)
    assert notice.body["last_seq"] == 2
    path = build_package(server, tmp_path / "cut.zip")
    report = verifier.verify_path(path, server.trusted)
    assert report.status == verifier.TRUNCATED, verifier.render(report)
    assert "session.truncated" in report.codes and "TRONQUÉ" in report.verdict
    root = bag.extract(path, tmp_path / "x")
    done = openssl_check(root, server)
    assert done.returncode == 3 and "INTACT BUT TRUNCATED" in done.stdout, done.stdout
    assert "TRONQUÉ" in (root / "data/LISEZMOI.txt").read_text()
    # Without the notice, a cut recording is not passed off as whole.
    for p in (root / "data/log").glob("000003.*"):
        p.unlink()
    reseal(root)
    assert "session.incomplete" in verifier.verify_path(root, server.trusted).codes
    assert openssl_check(root, server).returncode == 1


def test_conflicting_version_is_exported_and_flagged(tmp_path, device_key, seal_key, recording):
    from .test_intake import resign

    server = MemoryServer(device_key, seal_key)
    for u in recording[:3]:
        server.receive(u)
    server.receive(resign(recording[2], device_key, wall_us=recording[2].header["wall_us"] + 9))
    for u in recording[3:]:
        server.receive(u)
    path = build_package(server, tmp_path / "c.zip")
    report = verifier.verify_path(path, server.trusted)
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert "record.conflict" in report.codes
    assert openssl_check(bag.extract(path, tmp_path / "x"), server).returncode == 0


def test_missing_keys(bag_dir):
    shutil.rmtree(bag_dir / "data/keys")
    assert "key.unreadable" in _codes(bag_dir)


def test_altered_ciphertext(bag_dir):
    path = bag_dir / "data/ciphertext/000002.bin"
    data = bytearray(path.read_bytes())
    data[5] ^= 0x80
    path.write_bytes(bytes(data))
    reseal(bag_dir)
    assert "segment.cipher" in _codes(bag_dir)
    done = openssl_check(bag_dir)
    assert done.returncode == 1 and "ciphertext of data/records/000002-segment.json" in done.stdout


def test_changed_header_has_no_receipt_in_the_openssl_procedure(bag_dir):
    path = bag_dir / "data/records/000003-segment.json"
    h = json.loads(path.read_bytes())
    h["mono_us"] += 1
    path.write_bytes(canonical(h))
    reseal(bag_dir)
    out = openssl_check(bag_dir).stdout
    assert "no server receipt for data/records/000003-segment.json" in out


def test_truncation_notice_signed_by_another_key(tmp_path, device_key, seal_key, recording):
    server = MemoryServer(device_key, seal_key)
    for u in recording[:3]:
        server.receive(u)
    server.signer, genuine_signer = crypto.Signer.generate(), server.signer  # an unpublished key signs the notice
    server.truncate(silence=900)
    forger, server.signer = server.signer, genuine_signer
    root = bag.extract(build_package(server, tmp_path / "cut.zip"), tmp_path / "x")
    (root / f"data/keys/signing/{forger.fingerprint}.pem").write_text(forger.public_pem)  # shipped with it
    reseal(root)
    report = verifier.verify_path(root, server.trusted)
    assert report.status == verifier.ALTERED and "key.untrusted" in report.codes, verifier.render(report)
    done = openssl_check(root, server)
    assert done.returncode == 1 and "not a published signing key" in done.stdout


def test_unanchored_openssl_procedure_never_says_intact(package, bag_dir):
    done = subprocess.run(["sh", str(SCRIPT), str(bag_dir)], capture_output=True, text=True)
    assert done.returncode == verifier.NOT_ANCHORED and "NON ANCRÉ" in done.stdout and "INTÈGRE" not in done.stdout


def _pdf_text(pdf: bytes) -> bytes:
    import base64
    import re
    import zlib

    text = b""
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        raw = m.group(1).strip()
        if raw.endswith(b"~>"):
            raw = base64.a85decode(raw[:-2])
        text += zlib.decompress(raw)
    return text


def test_the_report_prints_the_key_log(tmp_path, device_key, seal_key, recording):
    from balise_evidence import keylog, ledger

    server = MemoryServer(device_key, seal_key)
    for u in recording:
        server.receive(u)
    first = keylog.append(ledger.Head(), keylog.body(role="signing", fingerprint=server.signer.fingerprint,
                                                      public_pem=server.signer.public_pem, at="2026-12-01T00:00:00Z"),
                          server.signer)
    device = keylog.append(ledger.Head(0, first.sha256), keylog.body(
        role="device", fingerprint=device_key.fingerprint, public_pem=device_key.public_pem,
        at="2026-12-01T00:00:00Z"), server.signer)
    inp = server.export_input()
    inp.key_log = keylog.document([(first.data, first.signature), (device.data, device.signature)])
    inp.key_log_url = "https://balise.example.org/api/v1/evidence/key-log"
    root = bag.extract(bag.build(inp, server.exporter, tmp_path / "k.zip"), tmp_path / "x")
    text = _pdf_text((root / "data/rapport.pdf").read_bytes())
    assert device_key.fingerprint[:32].encode() in text and b"balise.example.org" in text
    assert verifier.anchors_from_key_log((root / "data/keys/key-log.json").read_bytes(), server.signer.fingerprint)
    assert "balise.example.org/api/v1/evidence/key-log" in (root / "data/LISEZMOI.txt").read_text()

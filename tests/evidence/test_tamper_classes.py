"""The acceptance tamper classes of issue 12: a forger re-bags the package, signs it with
fresh keys of her own and gets a fresh RFC 3161 token from a public authority. Through the
documented path (the released verifier and the openssl-only procedure, the fingerprints
and the authority's root obtained out of band) every one ends in ALTÉRÉ, and without the
anchors in NON ANCRÉ: never INTÈGRE."""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import bagit
import pytest

from balise_evidence import bag, crypto, tsa, verifier
from balise_evidence.canonical import canonical, sha256_hex

from . import tsa_server
from .memory import MemoryServer

SCRIPT = Path(verifier.__file__).with_name("verifier_openssl.sh")


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    auth = tsa_server.start(tmp_path_factory.mktemp("tsa"))
    yield auth
    auth.stop()


@pytest.fixture(scope="module")
def public_tsa(tmp_path_factory):
    """Another authority: a look-alike, or any public one the forger uses."""
    auth = tsa_server.start(tmp_path_factory.mktemp("public-tsa"))
    yield auth
    auth.stop()


@pytest.fixture(scope="module")
def genuine(tmp_path_factory, device_key, seal_key, recording, authority):
    server = MemoryServer(device_key, seal_key)
    for u in recording:
        server.receive(u)
    server.access("listen")
    server.access("export")
    last = server.log[-1]
    token = tsa.request(last.data, authority.url)
    name = f"log-{last.body['index']:06d}"
    out = bag.build(server.export_input([(name, token, f"data/log/{last.body['index']:06d}.json")]), server.exporter,
                    tmp_path_factory.mktemp("pkg") / "case.zip", lambda data: tsa.request(data, authority.url))
    return server, out


def documented(root: Path, server: MemoryServer, authority) -> tuple[int, int, str]:
    """The verdicts of the documented path: verify_balise.py with the platform's
    fingerprints and the authority's root; verifier_openssl.sh with the same."""
    report = verifier.verify_path(root, server.trusted, Path(authority.ca_file))
    done = subprocess.run(["sh", str(SCRIPT), str(root), "--export", server.exporter.fingerprint,
                           "--signing", server.signer.fingerprint, "--device", server.device.fingerprint,
                           "--tsa-root", authority.ca_file], capture_output=True, text=True)
    return report.status, done.returncode, verifier.render(report) + "\n" + done.stdout


def rebag(root: Path, stamp_url: str, export_key: crypto.Signer | None = None) -> crypto.Signer:
    """What a forger does: recompute the manifests, get a fresh public timestamp on the
    new payload manifest, sign the tag manifest with a key of her own."""
    export_key = export_key or crypto.Signer.generate()
    (root / "data/keys/export.pem").write_text(export_key.public_pem)
    bagit.Bag(str(root)).save(manifests=True)
    (root / "timestamps/export.tsr").write_bytes(tsa.request((root / "manifest-sha256.txt").read_bytes(), stamp_url))
    bagit.Bag(str(root)).save()
    (root / "tagmanifest-sha256.txt.sig").write_bytes(export_key.sign((root / "tagmanifest-sha256.txt").read_bytes()))
    return export_key


def _drop_last_custody(root, authority, public_tsa):
    last = sorted((root / "data/custody").glob("*.json"))[-1]
    last.unlink()
    last.with_suffix(".sig").unlink()
    rebag(root, public_tsa.url)


def _drop_close_timestamp(root, authority, public_tsa):
    for p in (root / "data/timestamps").glob("*"):
        p.unlink()
    rebag(root, authority.url)  # even a genuine token from the platform's own authority


def _lookalike_authority(root, authority, public_tsa):
    (root / "data/keys/tsa-ca.pem").write_text(Path(public_tsa.ca_file).read_text())
    for token in (root / "data/timestamps").glob("*.tsr"):
        subject = token.with_suffix(".subject").read_text().strip()
        token.write_bytes(tsa.request((root / subject).read_bytes(), public_tsa.url))
    rebag(root, public_tsa.url)


def _silenced_wav(root, authority, public_tsa):
    path = root / "data/audio/DERIVE-stream.wav"
    with wave.open(str(path), "rb") as w:
        params, frames = w.getparams(), bytearray(w.readframes(w.getnframes()))
    start = 2 * params.framerate * 2  # from 2 s, 3 s of silence
    frames[start: start + 3 * params.framerate * 2] = bytes(3 * params.framerate * 2)
    with wave.open(str(path), "wb") as w:
        w.setparams(params)
        w.writeframes(bytes(frames))
    rebag(root, public_tsa.url)


def _replaced_verifiers(root, authority, public_tsa):
    (root / "data/verify_balise.py").write_text("print('Verdict : INTÈGRE ET COMPLET')\n")
    (root / "data/verifier_openssl.sh").write_text("echo OK\n")
    rebag(root, public_tsa.url)


def _every_key_replaced(root, authority, public_tsa):
    device, signer = crypto.DeviceKey.generate(), crypto.Signer.generate()
    (root / "data/keys/device.pem").write_text(device.public_pem)
    for old in (root / "data/keys/signing").glob("*.pem"):
        old.unlink()
    (root / "data/keys/signing" / f"{signer.fingerprint}.pem").write_text(signer.public_pem)
    renamed = {}
    prev = "0" * 64
    for path in sorted((root / "data/records").glob("*.json")):
        h = json.loads(path.read_bytes())
        old_sha = sha256_hex(path.read_bytes())
        h["device_key"], h["prev"] = device.fingerprint, prev if h["seq"] else "0" * 64
        data = canonical(h)
        path.write_bytes(data)
        path.with_suffix(".sig").write_bytes(device.sign(data))
        prev = renamed[old_sha] = sha256_hex(data)
    for folder in ("log", "custody"):
        prev = "0" * 64
        for path in sorted((root / "data" / folder).glob("*.json")):
            e = json.loads(path.read_bytes())
            e["signer"], e["prev"] = signer.fingerprint, prev
            if e.get("type") == "receipt":
                e["device_key"] = device.fingerprint
                e["record"]["sha256"] = renamed[e["record"]["sha256"]]
            if e.get("type") == "truncation":
                e["last_record_sha256"] = renamed[e["last_record_sha256"]]
            data = canonical(e)
            path.write_bytes(data)
            path.with_suffix(".sig").write_bytes(signer.sign(data))
            prev = sha256_hex(data)
    for token in (root / "data/timestamps").glob("*.tsr"):
        subject = token.with_suffix(".subject").read_text().strip()
        token.write_bytes(tsa.request((root / subject).read_bytes(), authority.url))
    rebag(root, authority.url)


TAMPERS = {
    "last custody entry deleted": (_drop_last_custody, {"key.untrusted"}),
    "close-time timestamp removed": (_drop_close_timestamp, {"key.untrusted", "timestamp.missing"}),
    "look-alike timestamp authority, its root in the package": (_lookalike_authority,
                                                               {"key.untrusted", "timestamp.invalid"}),
    "DERIVE-stream.wav silenced for 3 s": (_silenced_wav, {"key.untrusted", "derived.mismatch"}),
    "replaced verifiers": (_replaced_verifiers, {"key.untrusted"}),
    "every key replaced": (_every_key_replaced, {"key.untrusted"}),
}


def test_the_genuine_package_passes_the_documented_path(genuine, authority, tmp_path):
    server, out = genuine
    root = bag.extract(out, tmp_path)
    status, rc, text = documented(root, server, authority)
    assert (status, rc) == (verifier.COMPLETE, 0), text
    assert "derived.ok" in {f.code for f in verifier.verify_path(root, server.trusted).findings}
    assert verifier.verify_path(root).status == verifier.NOT_ANCHORED


@pytest.mark.parametrize("name", list(TAMPERS))
def test_each_forgery_ends_altered_or_not_anchored(name, genuine, authority, public_tsa, tmp_path):
    server, out = genuine
    root = bag.extract(out, tmp_path)
    tamper, codes = TAMPERS[name]
    tamper(root, authority, public_tsa)
    # without anchors: NOT ANCHORED (or ALTÉRÉ when a check needs none), never INTÈGRE
    assert verifier.verify_path(root).status in (verifier.NOT_ANCHORED, verifier.ALTERED)
    unanchored = subprocess.run(["sh", str(SCRIPT), str(root)], capture_output=True, text=True)
    assert unanchored.returncode == verifier.NOT_ANCHORED and "NON ANCRÉ" in unanchored.stdout
    status, rc, text = documented(root, server, authority)
    assert (status, rc) == (verifier.ALTERED, 1), text
    assert codes <= verifier.verify_path(root, server.trusted, Path(authority.ca_file)).codes
    assert "ALTÉRÉ OU INVALIDE" in text


def test_a_forgery_with_the_real_export_key_is_still_caught_where_it_can_be(genuine, authority, public_tsa, tmp_path):
    """An insider holding the export key (not the device's): a silenced WAV is caught by
    the reference verifier; a removed close-time token by both."""
    server, out = genuine
    root = bag.extract(out, tmp_path / "wav")
    _silenced_wav(root, authority, public_tsa)
    rebag(root, authority.url, server.exporter)
    status, _rc, text = documented(root, server, authority)
    assert status == verifier.ALTERED and "derived.mismatch" in text
    root = bag.extract(out, tmp_path / "ts")
    for p in (root / "data/timestamps").glob("*"):
        p.unlink()
    rebag(root, authority.url, server.exporter)
    status, rc, text = documented(root, server, authority)
    assert (status, rc) == (verifier.ALTERED, 1), text

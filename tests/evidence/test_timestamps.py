"""RFC 3161 timestamps against a real authority made with `openssl ts`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bagit
import pytest

from balise.evidence import actions
from balise.evidence.models import Case, TimestampToken
from balise_evidence import bag, crypto, tsa, verifier

from . import tsa_server
from .conftest import platform_anchors, upload_all


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    auth = tsa_server.start(tmp_path_factory.mktemp("tsa"))
    yield auth
    auth.stop()


@pytest.fixture
def configured(authority, monkeypatch):
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", authority.url)
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_CA_FILE", authority.ca_file)
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_CERT_FILE", authority.cert_file)
    return authority


def test_token_from_the_authority_verifies_and_binds_the_data(authority, tmp_path):
    token = tsa.request(b"log head", authority.url, authority.ca_file, authority.cert_file)
    (tmp_path / "t.tsr").write_bytes(token)
    (tmp_path / "good").write_bytes(b"log head")
    (tmp_path / "bad").write_bytes(b"log heaD")
    tsa.verify(tmp_path / "good", tmp_path / "t.tsr", authority.ca_file, authority.cert_file)
    with pytest.raises(tsa.TimestampError):
        tsa.verify(tmp_path / "bad", tmp_path / "t.tsr", authority.ca_file, authority.cert_file)
    with pytest.raises(tsa.TimestampError):
        tsa.request(b"x", "http://127.0.0.1:9/nothing-listens-here", timeout=2)


SCRIPT = Path(verifier.__file__).with_name("verifier_openssl.sh")


def openssl_check(root, anchors, *extra):
    args = ["--export", *anchors.roles["export"], "--device", *anchors.roles["device"]]
    for fp in sorted(anchors.roles["signing"]):
        args += ["--signing", fp]
    return subprocess.run(["sh", str(SCRIPT), str(root), *args, *extra], capture_output=True, text=True)


@pytest.mark.django_db
def test_log_and_export_are_timestamped(configured, enrolled, client, sealed, tmp_path):
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    # the head while recording (the first record, nothing stamped yet) and at close
    assert list(TimestampToken.objects.filter(case=case).values_list("log_index", flat=True)
                .order_by("log_index")) == [0, 4]
    out = actions.export(enrolled.staff, case.reference, "tribunal", "RG 26/2", tmp_path / "ts.zip")
    anchors = platform_anchors()
    root_ca = Path(configured.ca_file)
    report = verifier.verify_path(out, anchors, root_ca)
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert [f.message.split(":")[0] for f in report.findings if f.code == "timestamp.ok"] == [
        "export.tsr", "log-000000.tsr", "log-000004.tsr"]
    assert any(b.startswith("data/log/000004.json existed by ") for b in report.facts["timestamp_bounds"])
    # Without the expert's root, tokens are not taken on the package's word.
    assert "timestamp.unchecked" in {f.code for f in verifier.verify_path(out, anchors).findings}
    root = bag.extract(out, tmp_path / "x")
    done = openssl_check(root, anchors, "--tsa-root", str(root_ca))
    assert done.returncode == 0, done.stdout
    assert "data/log/000004.json existed by" in done.stdout
    # A token moved onto another file no longer matches it.
    (root / "data/timestamps/log-000004.subject").write_text("data/log/000003.json\n")
    assert "timestamp.invalid" in verifier.verify_path(root, anchors, root_ca).codes
    assert "timestamp data/timestamps/log-000004.tsr" in openssl_check(root, anchors, "--tsa-root", str(root_ca)).stdout


@pytest.mark.django_db
def test_forged_timestamps_are_caught_with_the_experts_root(configured, enrolled, client, sealed, tmp_path):
    """A look-alike authority whose root ships in the package, and a removed close-time
    token, re-bagged and re-signed with a fresh export key."""
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    out = actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / "ts.zip")
    anchors, root_ca = platform_anchors(), Path(configured.ca_file)
    (tmp_path / "fake-tsa").mkdir()
    lookalike = tsa_server.start(tmp_path / "fake-tsa")
    try:
        for tamper in ("lookalike", "removed"):
            root = bag.extract(out, tmp_path / tamper)
            if tamper == "lookalike":
                (root / "data/keys/tsa-ca.pem").write_text(Path(lookalike.ca_file).read_text())
                for name in ("data/timestamps/log-000004", "timestamps/export"):
                    subject = (root / f"{name}.subject").read_text().strip()
                    (root / f"{name}.tsr").write_bytes(tsa.request((root / subject).read_bytes(), lookalike.url))
            else:
                for p in (root / "data/timestamps").glob("log-000004.*"):
                    p.unlink()
            forged = crypto.Signer.generate()
            (root / "data/keys/export.pem").write_text(forged.public_pem)
            bagit.Bag(str(root)).save(manifests=True)
            (root / "tagmanifest-sha256.txt.sig").write_bytes(forged.sign((root / "tagmanifest-sha256.txt").read_bytes()))
            assert verifier.verify_path(root).status == verifier.NOT_ANCHORED
            report = verifier.verify_path(root, anchors, root_ca)
            assert report.status == verifier.ALTERED
            assert {"timestamp.invalid" if tamper == "lookalike" else "timestamp.missing", "key.untrusted"} <= report.codes
            assert openssl_check(root, anchors, "--tsa-root", str(root_ca)).returncode == 1
    finally:
        lookalike.stop()


@pytest.mark.django_db
def test_an_open_recording_is_timestamped_every_interval(configured, monkeypatch, enrolled, client, sealed):
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setenv("BALISE_EVIDENCE_TSA_INTERVAL", "60")
    upload_all(client, enrolled, sealed[:3])
    case = Case.objects.get(session=sealed[0].session)
    assert list(TimestampToken.objects.filter(case=case).values_list("log_index", flat=True)) == [0]
    assert actions.sweep(timezone.now())["timestamped"] == 0  # stamped less than a minute ago
    assert actions.sweep(timezone.now() + timedelta(seconds=61))["timestamped"] == 1
    assert sorted(TimestampToken.objects.filter(case=case).values_list("log_index", flat=True)) == [0, 2]
    assert actions.sweep(timezone.now() + timedelta(seconds=200))["timestamped"] == 0  # the head has not moved


@pytest.mark.django_db
def test_an_unreachable_authority_never_blocks_a_receipt(monkeypatch, enrolled, client, sealed, tmp_path):
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", "http://127.0.0.1:9/down")
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    assert case.recording == "closed" and not TimestampToken.objects.filter(case=case).exists()
    with pytest.raises(actions.EvidenceError) as failed:
        actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / "no.zip")
    assert failed.value.code == "timestamp" and not (tmp_path / "no.zip").exists()


@pytest.mark.django_db
def test_a_close_token_missed_while_the_authority_was_down_is_had_later(monkeypatch, configured, enrolled, client,
                                                                         sealed, tmp_path):
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", "http://127.0.0.1:9/down")
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    assert case.recording == "closed" and not TimestampToken.objects.filter(case=case).exists()
    assert actions.sweep()["timestamped"] == 0  # still down: nothing, and no error

    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", configured.url)  # back
    assert actions.sweep()["timestamped"] == 1
    assert list(TimestampToken.objects.filter(case=case).values_list("log_index", flat=True)) == [case.log_index]
    assert actions.sweep()["timestamped"] == 0  # once
    out = actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / "late.zip")
    report = verifier.verify_path(out, platform_anchors(), Path(configured.ca_file))
    assert report.status == verifier.COMPLETE, verifier.render(report)


def test_the_evidence_sweep_runs_off_the_dispatch_loop():
    """A timestamp authority that hangs (10 s a case) must not hold back alerts: the sweep
    is one of the dispatchers' periodic jobs (their own thread), not a step of the loop."""
    from balise.dispatch import periodic
    from balise.dispatch.dispatcher import Dispatcher

    assert "evidence sweep" in periodic._jobs
    assert not hasattr(Dispatcher, "sweep_evidence")

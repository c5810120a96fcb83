"""RFC 3161 timestamps against a real authority made with `openssl ts`."""

from __future__ import annotations

import subprocess

import pytest

from balise.evidence import actions
from balise.evidence.models import Case, TimestampToken
from balise_evidence import bag, tsa, verifier

from . import tsa_server
from .conftest import upload_all


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


@pytest.mark.django_db
def test_log_and_export_are_timestamped(configured, enrolled, client, sealed, tmp_path):
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    token = TimestampToken.objects.get(case=case)
    assert token.log_index == 4
    out = actions.export(enrolled.staff, case.reference, "tribunal", "RG 26/2", tmp_path / "ts.zip")
    report = verifier.verify_path(out)
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert [f.message.split(":")[0] for f in report.findings if f.code == "timestamp.ok"] == ["export.tsr",
                                                                                              "log-000004.tsr"]
    root = bag.extract(out, tmp_path / "x")
    done = subprocess.run(["sh", "data/verifier_openssl.sh"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    # A token moved onto another file no longer matches it.
    (root / "data/timestamps/log-000004.subject").write_text("data/log/000003.json\n")
    assert "timestamp.invalid" in verifier.verify_path(root).codes
    assert "timestamp data/timestamps/log-000004.tsr" in subprocess.run(
        ["sh", "data/verifier_openssl.sh"], cwd=root, capture_output=True, text=True).stdout


@pytest.mark.django_db
def test_an_unreachable_authority_never_blocks_a_receipt(monkeypatch, enrolled, client, sealed, tmp_path):
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", "http://127.0.0.1:9/down")
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    assert case.recording == "closed" and not TimestampToken.objects.filter(case=case).exists()
    with pytest.raises(actions.EvidenceError) as failed:
        actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / "no.zip")
    assert failed.value.code == "timestamp" and not (tmp_path / "no.zip").exists()

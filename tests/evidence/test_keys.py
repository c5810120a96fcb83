"""Key history and the published key log: every key rotates, past cases still export
and verify; forged key logs and forged packages do not anchor."""

from __future__ import annotations

import json

import pytest

from balise.cli import main
from balise.evidence import actions, conf
from balise.evidence.models import Case, KeyLogEntry
from balise_evidence import bag, crypto, verifier
from balise_evidence.canonical import b64e

from .conftest import make_recording, platform_anchors, upload_all


@pytest.fixture
def own_keys(settings, tmp_path):
    """A data directory of this test's own: rotation rewrites its key files."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    yield
    conf._keys.cache_clear()


def test_rotating_every_key_twice_keeps_every_past_case_verifiable(own_keys, enrolled, client, device_key, tmp_path,
                                                                   capsys):
    cases = []
    for round_ in range(3):
        recording = make_recording(device_key, conf.keys().seal, seconds=6.0, seed=round_)
        upload_all(client, enrolled, recording)
        cases.append(Case.objects.get(session=recording[0].session))
        for case in cases:  # custody entries signed by successive signing keys
            actions.listen(enrolled.staff, case.reference, f"écoute {round_}", "")
        if round_ < 2:
            for role in ("signing", "export", "seal"):
                before = actions.server_keys()[f"{role}_fingerprint"]
                assert main(["evidence", "rotate-key", role]) == 0
                assert actions.server_keys()[f"{role}_fingerprint"] != before
    assert KeyLogEntry.objects.filter(role="signing").count() == 3
    assert KeyLogEntry.objects.filter(role="seal").count() == 3
    anchors = platform_anchors()
    for case in cases:
        out = actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / f"{case.reference}.zip")
        report = verifier.verify_path(out, anchors)
        assert report.status == verifier.COMPLETE, verifier.render(report)
    # the first case's custody was signed by the three successive signing keys
    root = bag.extract(tmp_path / f"{cases[0].reference}.zip", tmp_path / "x")
    assert len(list((root / "data/keys/signing").glob("*.pem"))) == 3
    capsys.readouterr()


def test_a_key_set_in_the_environment_is_not_rotated_here(own_keys, monkeypatch, capsys):
    monkeypatch.setenv("BALISE_EVIDENCE_EXPORT_KEY", crypto.Signer.generate().to_pem())
    assert main(["evidence", "rotate-key", "export"]) == 2
    err = capsys.readouterr().err
    assert "BALISE_EVIDENCE_EXPORT_KEY" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.django_db
def test_a_wrong_master_key_is_a_one_line_error(own_keys, monkeypatch, capsys):
    monkeypatch.setenv("BALISE_EVIDENCE_MASTER_KEY", "not base64 at all!")
    assert main(["evidence", "keys"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_key_log_is_served_publicly_and_anchors(enrolled, client):
    r = client.get("/api/v1/evidence/key-log")  # no device token: it is public
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    anchors = verifier.anchors_from_key_log(r.content, actions.key_log_pin())
    keys = actions.server_keys()
    assert keys["signing_fingerprint"] in anchors.roles["signing"]
    assert keys["export_fingerprint"] in anchors.roles["export"]
    assert enrolled.device.evidence_keys.get().fingerprint in anchors.roles["device"]


@pytest.mark.django_db
def test_forged_key_logs_do_not_anchor(enrolled, device_key):
    doc = json.loads(actions.key_log_document())
    pin = actions.key_log_pin()
    with pytest.raises(verifier.AnchorError):  # someone else's log, pinned to the platform's key
        forger = crypto.Signer.generate()
        from balise_evidence import keylog, ledger

        entry = keylog.append(ledger.Head(), keylog.body(role="signing", fingerprint=forger.fingerprint,
                                                          public_pem=forger.public_pem, at="2026-12-01T00:00:00Z"),
                              forger)
        verifier.anchors_from_key_log(keylog.document([(entry.data, entry.signature)]), pin)
    # an entry added to the platform's log without its signing key
    forged_device = crypto.DeviceKey.generate()
    last = json.loads(doc["entries"][-1]["data"])
    from balise_evidence import keylog, ledger
    from balise_evidence.canonical import sha256_hex

    extra = keylog.append(ledger.Head(last["index"], sha256_hex(doc["entries"][-1]["data"].encode())),
                          keylog.body(role="device", fingerprint=forged_device.fingerprint,
                                      public_pem=forged_device.public_pem, at="2026-12-01T00:00:00Z"),
                          crypto.Signer.generate())
    doc["entries"].append({"data": extra.data.decode(), "signature": b64e(extra.signature)})
    with pytest.raises(verifier.AnchorError):
        verifier.anchors_from_key_log(json.dumps(doc).encode(), pin)
    # one entry deleted from the middle
    doc = json.loads(actions.key_log_document())
    del doc["entries"][1]
    with pytest.raises(verifier.AnchorError):
        verifier.anchors_from_key_log(json.dumps(doc).encode(), pin)


@pytest.mark.django_db(transaction=True)
def test_the_verifier_fetches_the_key_log_from_its_url(live_server, world):
    pin = actions.key_log_pin()
    anchors = verifier.anchors_from_key_log(verifier.fetch(f"{live_server.url}/api/v1/evidence/key-log"), pin)
    assert actions.server_keys()["export_fingerprint"] in anchors.roles["export"]
    with pytest.raises(verifier.AnchorError):
        verifier.fetch(f"{live_server.url}/no-such-key-log")


def test_a_key_log_read_from_a_pinned_key_in_the_middle_vouches_only_for_what_follows():
    """The home station pins the signing key in force when it enrols, not necessarily the
    log's first one: ``keylog.in_force`` takes only keys the pinned one introduced (or its
    successors), while the expert's ``--pin`` must still be the first key."""
    from balise_evidence import keylog, ledger

    k1, k2, k3, intruder = (crypto.Signer.generate() for _ in range(4))
    s1, s2 = crypto.SealKey.generate(), crypto.SealKey.generate()

    def log(*steps):
        head, entries = ledger.Head(), []
        for role, key, signer in steps:
            entry = keylog.append(head, keylog.body(role=role, fingerprint=key.fingerprint,
                                                    public_pem=key.public_pem, at="2026-12-01T00:00:00Z"), signer)
            head = ledger.Head(entry.body["index"], entry.sha256)
            entries.append((entry.data, entry.signature))
        return keylog.document(entries)

    genuine = log(("signing", k1, k1), ("seal", s1, k1), ("signing", k2, k1), ("seal", s2, k2), ("signing", k3, k2))
    found = keylog.in_force(genuine, k2.fingerprint)
    assert (found.signing.fingerprint, found.seal.fingerprint) == (k3.fingerprint, s2.fingerprint)
    assert [k.index for k in verifier.read_key_log(genuine, k2.fingerprint, pin_anywhere=True).keys] == [2, 3, 4]
    assert keylog.in_force(genuine, k3.fingerprint).seal is None, "no seal key listed since k3"
    with pytest.raises(verifier.AnchorError):  # the expert's pin is the first key
        verifier.anchors_from_key_log(genuine, k2.fingerprint)
    assert verifier.anchors_from_key_log(genuine, k1.fingerprint).roles["signing"] == {
        k.fingerprint for k in (k1, k2, k3)}
    # whoever holds a key retired before the pinned one cannot introduce a new one
    with pytest.raises(verifier.AnchorError):
        keylog.in_force(log(("signing", k1, k1), ("signing", k2, k1), ("signing", intruder, k1)), k2.fingerprint)
    # nor can a log of its own that lists the pinned key and then another
    with pytest.raises(verifier.AnchorError):
        keylog.in_force(log(("signing", intruder, intruder), ("signing", k2, intruder), ("signing", k3, intruder)),
                        k2.fingerprint)
    with pytest.raises(verifier.AnchorError, match="pinned signing key is not in the key log"):
        keylog.in_force(log(("signing", intruder, intruder), ("signing", k3, intruder)), k2.fingerprint)

"""The evidence vault on the server: upload API, receipts, log, custody, retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from balise.evidence import actions, conf
from balise.evidence.models import Case, CustodyRecord, LogEntry, Record
from balise_evidence import crypto, verifier
from balise_evidence.canonical import b64e, canonical

from .conftest import URL, platform_anchors, post, snapshot, upload_all
from .test_intake import resign

pytestmark = pytest.mark.django_db


def test_keys_and_registration(enrolled, client, device_key):
    keys = client.get("/api/v1/evidence/keys", **enrolled.auth).json()
    assert keys["seal_fingerprint"] == conf.keys().seal.fingerprint
    again = client.post("/api/v1/evidence/device-key", data={"public_key_pem": device_key.public_pem},
                        content_type="application/json", **enrolled.auth)
    assert again.status_code == 200
    other = client.post("/api/v1/evidence/device-key", data={"public_key_pem": crypto.DeviceKey.generate().public_pem},
                        content_type="application/json", **enrolled.auth)
    assert other.status_code == 409 and other.json()["fields"][0]["field"] == "public_key_pem"
    bad = client.post("/api/v1/evidence/device-key", data={"public_key_pem": "nope"},
                      content_type="application/json", **enrolled.auth)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "public_key_pem"
    assert client.get("/api/v1/evidence/keys").status_code == 401


def test_upload_receipts_are_signed_chained_and_idempotent(enrolled, client, sealed):
    answers = upload_all(client, enrolled, sealed)
    signer = conf.keys().signer
    prev = "0" * 64
    for u, a in zip(sealed, answers):
        data = canonical(a["receipt"])
        assert crypto.verify_ed25519(signer.public_key, crypto.b64d(a["signature"]), data)
        assert a["receipt"]["record"]["sha256"] == u.sha256 and a["receipt"]["prev"] == prev
        prev = a["sha256"]
    case = Case.objects.get(session=sealed[0].session)
    assert (case.state, case.recording, case.segments) == ("sealed", "closed", 3)
    assert case.association_id == enrolled.association.pk and case.person_id == enrolled.person.pk
    before = snapshot()
    again = post(client, enrolled, sealed[2])
    assert again.status_code == 200 and again.json()["duplicate"] and again.json()["sha256"] == answers[2]["sha256"]
    assert snapshot() == before
    # At rest the ciphertext is sealed again under the case key, and opens to what was received.
    record = Record.objects.get(case=case, seq=1)
    assert bytes(record.blob) != sealed[1].ciphertext
    assert actions._ciphertext(case, actions._case_key(case), record) == sealed[1].ciphertext


@pytest.mark.parametrize("attack", ["signature", "chain", "hash", "oversized", "replayed", "malformed", "not_json"])
def test_bad_uploads_are_refused_and_change_nothing(attack, enrolled, other_world, client, sealed, device_key,
                                                    monkeypatch):
    upload_all(client, enrolled, sealed[:2])
    before = snapshot()
    who = enrolled
    if attack == "signature":
        body = sealed[2].to_json()
        body["signature"] = sealed[1].to_json()["signature"]
        expected = (400, "signature", "signature")
    elif attack == "chain":
        body = resign(sealed[2], device_key, prev="ab" * 32)
        expected = (409, "chain", "header.prev")
    elif attack == "hash":
        body = sealed[2].to_json()
        body["ciphertext"] = b64e(sealed[2].ciphertext[:-1] + bytes([sealed[2].ciphertext[-1] ^ 1]))
        expected = (400, "hash", "header.cipher_sha256")
    elif attack == "oversized":
        monkeypatch.setenv("BALISE_EVIDENCE_MAX_SEGMENT_BYTES", "1000")
        body = sealed[2].to_json()
        expected = (413, "oversized", "ciphertext")
    elif attack == "replayed":  # a captured record sent with another device's token
        client.post("/api/v1/evidence/device-key", data={"public_key_pem": crypto.DeviceKey.generate().public_pem},
                    content_type="application/json", **other_world.auth)
        who, body = other_world, sealed[2].to_json()
        expected = (403, "forbidden", "header.session")
    elif attack == "malformed":
        body = sealed[2].to_json()
        body["header"]["offset"] = -5
        expected = (422, "invalid", "header.offset")
    else:
        answer = client.post(URL, data="{nope", content_type="application/json", **enrolled.auth)
        assert (answer.status_code, answer.json()["fields"][0]["field"]) == (400, "body")
        assert snapshot() == before
        return
    answer = post(client, who, body)
    got = answer.json()
    assert (answer.status_code, got["error"], got["fields"][0]["field"]) == expected, got
    assert got["message"] and got["retry"] is False
    assert snapshot() == before


def test_second_version_is_kept_and_flagged(enrolled, client, sealed, device_key):
    upload_all(client, enrolled, sealed[:3])
    other = post(client, enrolled, resign(sealed[2], device_key, wall_us=sealed[2].header["wall_us"] + 5))
    assert other.status_code == 201 and other.json()["conflict"] is True
    upload_all(client, enrolled, sealed[3:])
    case = Case.objects.get(session=sealed[0].session)
    assert Record.objects.filter(case=case, seq=2).count() == 2 and case.segments == 3
    assert Record.objects.get(case=case, seq=2, conflict=False).header_sha256 == sealed[2].sha256


def test_out_of_order_upload_asks_for_a_retry(enrolled, client, sealed):
    answer = post(client, enrolled, sealed[2])
    assert answer.status_code == 409 and answer.json()["retry"] is True
    upload_all(client, enrolled, sealed)


def test_silent_session_gets_a_truncation_notice_and_exports_truncated(enrolled, client, sealed, tmp_path):
    upload_all(client, enrolled, sealed[:3])  # the device disappears after segment 2
    case = Case.objects.get(session=sealed[0].session)
    assert actions.issue_truncation_notices(timezone.now()) == []
    later = timezone.now() + timedelta(seconds=conf.silence_seconds() + 1)
    assert [c.pk for c in actions.issue_truncation_notices(later)] == [case.pk]
    assert actions.issue_truncation_notices(later) == []  # one notice per silence
    case.refresh_from_db()
    assert (case.recording, case.state) == ("truncated", "sealed")
    notice = json.loads(bytes(LogEntry.objects.get(case=case, kind="truncation").data))
    assert notice["last_seq"] == 2 and notice["last_record_sha256"] == sealed[2].sha256
    out = actions.export(enrolled.staff, case.reference, "réquisition", "PV 12/2026", tmp_path / "cut.zip")
    report = verifier.verify_path(out, platform_anchors())
    assert report.status == verifier.TRUNCATED, verifier.render(report)
    # Late records (a long offline period) are still taken; the notice stays, superseded.
    upload_all(client, enrolled, sealed[3:])
    case.refresh_from_db()
    assert case.recording == "closed"
    report = verifier.verify_path(actions.export(enrolled.staff, case.reference, "r", "", tmp_path / "full.zip"),
                                  platform_anchors())
    assert report.status == verifier.COMPLETE and "truncation.superseded" in {f.code for f in report.findings}


def test_every_access_is_custody_logged_first_and_scoped(enrolled, other_world, client, sealed):
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    with pytest.raises(actions.EvidenceError) as refused:
        actions.listen(other_world.staff, case.reference, "curiosité", "")
    assert refused.value.status == 404
    with pytest.raises(actions.EvidenceError) as refused:
        actions.listen(enrolled.staff, case.reference, "  ", "")
    assert refused.value.field == "reason"
    assert CustodyRecord.objects.count() == 0
    stream = actions.listen(enrolled.staff, case.reference, "écoute pour le dépôt de plainte", "PV 2026/7")
    assert stream.startswith(b"OggS") and len(stream) == sealed[-1].header["stream_len"]
    actions.place_legal_hold(enrolled.staff, case.reference, "enquête", "Parquet 26/123")
    rows = list(CustodyRecord.objects.filter(case=case).order_by("index"))
    assert [r.action for r in rows] == ["listen", "legal_hold"]
    assert json.loads(bytes(rows[1].data))["prev"] == rows[0].sha256
    signer = conf.keys().signer
    assert all(crypto.verify_ed25519(signer.public_key, bytes(r.signature), bytes(r.data)) for r in rows)
    with pytest.raises(ValueError):
        rows[0].save()


def test_retention_deletion_is_delayed_cancellable_and_destroys_the_key(enrolled, client, sealed):
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    answer = client.post(f"/api/v1/evidence/sessions/{case.session}/deletion", **enrolled.auth)
    assert answer.status_code == 202 and answer.json()["state"] == "deletion_pending"
    case.refresh_from_db()
    assert case.deletion_due_at > timezone.now() + timedelta(days=29)
    assert actions.destroy_due(timezone.now()) == []  # never immediate
    actions.cancel_deletion(enrolled.staff, case.reference, "demande sous contrainte", "")
    case.refresh_from_db()
    assert case.state == "sealed" and case.deletion_due_at is None
    actions.place_legal_hold(enrolled.staff, case.reference, "enquête", "Parquet 26/123")
    with pytest.raises(actions.EvidenceError):
        actions.request_deletion(enrolled.staff, case.reference, "fin", "")
    actions.release_legal_hold(enrolled.staff, case.reference, "classement", "Parquet 26/123")
    actions.request_deletion(enrolled.staff, case.reference, "fin de conservation", "RGPD art. 17")
    destroyed = actions.destroy_due(timezone.now() + timedelta(seconds=conf.deletion_delay_seconds(False) + 1))
    assert [c.pk for c in destroyed] == [case.pk]
    case.refresh_from_db()
    assert case.state == "destroyed" and case.wrapped_key is None and case.key_destroyed_at
    assert not Record.objects.filter(case=case, blob__isnull=False).exists()
    assert Record.objects.filter(case=case).count() == 5 and LogEntry.objects.filter(case=case).count() == 5  # tombstone
    with pytest.raises(actions.EvidenceError) as gone:
        actions.listen(enrolled.staff, case.reference, "r", "")
    assert gone.value.status == 410
    actions_logged = list(CustodyRecord.objects.filter(case=case).order_by("index").values_list("action", flat=True))
    assert actions_logged == ["deletion_request", "cancel_deletion", "legal_hold", "release_hold", "deletion_request",
                              "destroy"]
    assert post(client, enrolled, sealed[1]).status_code == 410


def test_cli_verify_and_export(enrolled, client, sealed, tmp_path, capsys):
    from balise.cli import main

    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    out = tmp_path / "p.zip"
    assert main(["evidence", "export", case.reference, "--user", enrolled.staff.username, "--reason", "tribunal",
                 "--legal-reference", "RG 26/001", "-o", str(out)]) == 0
    assert main(["evidence", "verify", str(out)]) == verifier.NOT_ANCHORED
    assert "NON ANCRÉ" in capsys.readouterr().out
    log = tmp_path / "key-log.json"
    assert main(["evidence", "key-log", "-o", str(log)]) == 0
    pin = actions.key_log_pin()
    assert main(["evidence", "verify", str(out), "--trust-log", str(log), "--pin", pin]) == 0
    assert "INTACT AND COMPLETE" in capsys.readouterr().out
    assert main(["evidence", "verify", str(out), "--trust-log", str(log), "--pin", "ab" * 32]) == verifier.NOT_ANCHORED
    capsys.readouterr()
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert main(["evidence", "verify", str(tmp_path / "junk.zip")]) == 2
    assert main(["evidence", "export", case.reference, "--user", "nobody", "--reason", "x", "-o", str(out)]) == 2
    assert main(["evidence", "export", "BAL-NONE", "--user", enrolled.staff.username, "--reason", "x",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err


def test_a_recording_of_a_press_that_joined_an_alert_is_filed_with_that_alert(enrolled, client, device_key):
    """Her long press while her alert was open joined it (no second alert): the room
    recording the station starts for that press belongs to the alert it joined."""
    import uuid

    from balise.alerts.models import Alert
    from balise_evidence.audio import GeneratedMicrophone
    from balise_evidence.recorder import Recorder, record_all
    from tests.evidence.conftest import Clock, _server_seal, upload_all
    from tests.spine.test_device_api import alert_body, post as post_alert

    first, joined = alert_body(kind="emergency"), alert_body(kind="alarm")
    post_alert(client, enrolled, "/alerts", first)
    assert post_alert(client, enrolled, "/alerts", joined).json()["joined_to"] == first["client_id"]
    clock = Clock()
    recorder = Recorder(device_key, _server_seal().public_key, alert=joined["client_id"], wall_us=clock.wall_us,
                        mono_us=clock.mono_us)
    uploads = record_all(GeneratedMicrophone(seconds=4, seed=3), recorder)
    upload_all(client, enrolled, uploads)
    case = Case.objects.get(session=uploads[0].session)
    assert case.alert == Alert.objects.get(client_id=first["client_id"])
    assert uuid.UUID(joined["client_id"]) != case.alert.client_id


@pytest.mark.parametrize("pin", ["cancel", "duress"])
def test_a_recording_goes_on_being_taken_after_its_alert_is_cancelled(enrolled, client, device_key, pin):
    """The station records on for its after-close window once the alarm has left the open
    list (a cancel and a duress cancel look the same to it): the intake takes those
    records as for any session, until the session's own close record."""
    from balise.alerts.models import Alert
    from balise_evidence.audio import GeneratedMicrophone
    from balise_evidence.recorder import Recorder, record_all
    from tests.evidence.conftest import Clock, _server_seal
    from tests.personas import CANCEL_PIN, DURESS_PIN
    from tests.spine.test_device_api import alert_body, post as post_alert

    alarm = alert_body(kind="alarm")
    post_alert(client, enrolled, "/alerts", alarm)
    clock = Clock()
    recorder = Recorder(device_key, _server_seal().public_key, alert=alarm["client_id"], wall_us=clock.wall_us,
                        mono_us=clock.mono_us)
    uploads = record_all(GeneratedMicrophone(seconds=6, seed=5), recorder)
    assert uploads[-1].kind == "close" and len(uploads) >= 4
    upload_all(client, enrolled, uploads[:2])
    r = post_alert(client, enrolled, f"/alerts/{alarm['client_id']}/cancel",
                   {"pin": CANCEL_PIN if pin == "cancel" else DURESS_PIN})
    assert r.status_code == 200
    alert = Alert.objects.get(client_id=alarm["client_id"])
    assert alert.duress == (pin == "duress") and (alert.is_active == (pin == "duress"))
    upload_all(client, enrolled, uploads[2:])  # every one 201, the close record included
    case = Case.objects.get(session=uploads[0].session)
    assert case.alert == alert
    assert (case.recording, case.segments) == ("closed", sum(u.kind == "segment" for u in uploads))

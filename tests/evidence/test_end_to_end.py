"""Microphone -> recorder -> real HTTP uploads -> receipts -> export -> offline verdict."""

from __future__ import annotations

from collections import deque

import httpx
import pytest

from balise.evidence import actions
from balise.evidence.models import Case
from balise_evidence import crypto, verifier
from balise_evidence.audio import GeneratedMicrophone
from balise_evidence.recorder import Recorder, RecordingSession
from balise_evidence.records import SealedUpload
from balise_evidence.uploader import Uploader, UploadRejected, UploadRetry

from .conftest import platform_anchors


@pytest.mark.django_db(transaction=True)
def test_record_stream_export_verify(live_server, tmp_path):
    from tests.personas import make_world

    world = make_world("e2e")
    base = f"{live_server.url}/api/v1"
    auth = {"Authorization": f"Bearer {world.token}"}
    device_key = crypto.DeviceKey.generate()  # created at enrolment, kept on the station
    assert httpx.post(f"{base}/evidence/device-key", json={"public_key_pem": device_key.public_pem},
                      headers=auth).status_code == 201
    keys = httpx.get(f"{base}/evidence/keys", headers=auth).json()
    uploader = Uploader(base, world.token, server_signing_pem=keys["signing_public_pem"])
    recorder = Recorder(device_key, crypto.load_seal_public_key(keys["seal_public_pem"]))

    # The station's durable queue, reduced to a FIFO of JSON; the network drops
    # while segment 2 is queued, so it waits and goes later: nothing is lost.
    queue: deque[dict] = deque()
    offline = {"until_seq": 2}
    receipts = []

    def drain():
        while queue:
            upload = SealedUpload.from_json(queue[0])
            if upload.seq == offline["until_seq"]:
                offline["until_seq"] = -1
                return  # network down: keep it, retry on the next tick
            receipt = uploader.upload(upload)
            recorder.note_receipt(receipt.sha256)
            receipts.append(receipt)
            queue.popleft()  # the local copy goes only once the receipt is checked

    for upload in RecordingSession(GeneratedMicrophone(seconds=16, seed=3), recorder).run():
        queue.append(upload.to_json())
        drain()
    drain()
    assert not queue and [r.body["record"]["seq"] for r in receipts] == [0, 1, 2, 3, 4, 5]
    # The receipts the station saw went into the headers it signed afterwards.
    case = Case.objects.get(session=recorder.session)
    assert case.recording == "closed" and case.segments == 4

    # Resending is harmless; a record of an unknown session must wait for its open record.
    again = uploader.upload(SealedUpload.from_json(upload.to_json()))
    assert again.duplicate and again.sha256 == receipts[-1].sha256
    stray = Recorder(device_key, crypto.load_seal_public_key(keys["seal_public_pem"]))
    stray.open()
    with pytest.raises(UploadRetry):
        uploader.upload(stray.close()[-1])
    forged = SealedUpload(upload.header, crypto.DeviceKey.generate().sign(upload.header_bytes), None)
    with pytest.raises(UploadRejected) as refused:
        uploader.upload(forged)
    assert refused.value.status == 400 and refused.value.field == "signature"

    out = actions.export(world.staff, case.reference, "transmission au parquet", "PV 2026/42", tmp_path / "e2e.zip")
    report = verifier.verify_path(out, platform_anchors())
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert report.facts["segments"] == 4 and report.facts["custody_actions"] == []

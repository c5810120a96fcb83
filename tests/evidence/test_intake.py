"""Server-side checks of uploads (pure): every bad upload is refused by name."""

from __future__ import annotations

import copy

import pytest

from balise_evidence import crypto, intake
from balise_evidence.canonical import b64e, canonical
from balise_evidence.records import SealedUpload

from .conftest import make_recording


def resign(upload: SealedUpload, key: crypto.DeviceKey, **changes) -> dict:
    header = {**copy.deepcopy(upload.header), **changes}
    body = {"header": header, "signature": b64e(key.sign(canonical(header)))}
    if upload.ciphertext is not None:
        body["ciphertext"] = b64e(upload.ciphertext)
    return body


def refused(server, body) -> intake.IntakeError:
    before = dict(server.known.records)
    with pytest.raises(intake.IntakeError) as info:
        server.receive(body)
    assert server.known.records == before, "a refused upload changes nothing"
    return info.value


def test_a_whole_session_is_accepted_and_resending_is_idempotent(server, recording):
    receipts = [server.receive(u) for u in recording]
    assert [r.body["record"]["seq"] for r in receipts] == [0, 1, 2, 3, 4]
    again = server.receive(recording[2])
    assert again.sha256 == receipts[2].sha256 and len(server.log) == 5
    assert server.stream().startswith(b"OggS")


def test_bad_signature(server, recording):
    server.receive(recording[0])
    body = recording[1].to_json()
    body["signature"] = recording[2].to_json()["signature"]
    assert refused(server, body).code == "signature"


def test_broken_chain_and_missing_predecessor(server, recording, device_key):
    server.receive(recording[0])
    server.receive(recording[1])
    err = refused(server, resign(recording[2], device_key, prev="ab" * 32))
    assert (err.code, err.field) == ("chain", "header.prev")
    err = refused(server, recording[3].to_json())
    assert (err.code, err.retry, err.status) == ("predecessor_missing", True, 409)


def test_wrong_hash_and_oversized(server, recording, device_key):
    server.receive(recording[0])
    body = recording[1].to_json()
    flipped = bytearray(recording[1].ciphertext)
    flipped[10] ^= 1
    body["ciphertext"] = b64e(bytes(flipped))
    assert refused(server, body).field == "header.cipher_sha256"
    # A header whose audio hash lies (ciphertext consistent) is caught by decrypting.
    err = refused(server, resign(recording[1], device_key, audio_sha256="cd" * 32))
    assert err.field == "header.audio_sha256"
    big = resign(recording[1], device_key)
    with pytest.raises(intake.IntakeError) as info:
        intake.check(big, device_public_key=device_key.public_key, seal_key=server.seal, known=server.known,
                     max_cipher_bytes=1000)
    assert (info.value.code, info.value.status) == ("oversized", 413)


def test_replayed_from_another_device_is_refused(server, recording, seal_key):
    other = crypto.DeviceKey.generate()
    foreign = make_recording(other, seal_key, seconds=1)
    err = refused(server, foreign[0].to_json())
    assert (err.code, err.status) == ("device_key", 403)


def test_malformed_headers_name_the_field(server, recording):
    body = recording[0].to_json()
    del body["header"]["sealed_key"]
    assert refused(server, body).field == "header.sealed_key"
    body = recording[0].to_json()
    body["header"]["seq"] = "zero"
    assert refused(server, body).field == "header.seq"
    assert refused(server, {"header": recording[0].header, "signature": "***"}).field == "signature"
    assert refused(server, [1, 2]).field == "body"


def test_a_second_version_of_a_segment_is_kept_and_flagged(server, recording, device_key):
    for u in recording[:3]:
        server.receive(u)
    other = resign(recording[2], device_key, wall_us=recording[2].header["wall_us"] + 7)
    receipt = server.receive(other)
    assert receipt.body["conflict"] is True
    assert len([h for h in server.known.records.values() if h["seq"] == 2]) == 2
    first = [r for r in server.stored if r.seq == 2][0]
    assert not first.conflict and first.header == recording[2].header_bytes


def test_after_close_nothing_more(server, recording, device_key):
    for u in recording:
        server.receive(u)
    err = refused(server, resign(recording[-1], device_key, seq=5, prev=recording[-1].sha256, kind="close"))
    assert err.code == "chain"

from __future__ import annotations

import hashlib

import pytest

from balise_evidence import crypto, ogg
from balise_evidence.audio import GeneratedMicrophone, OpusEncoder, WavMicrophone, decode_to_pcm, pcm_to_wav
from balise_evidence.canonical import ZERO_HASH, canonical, sha256_hex
from balise_evidence.recorder import Recorder, RecorderError

from .conftest import Clock


def test_segments_are_whole_pages_and_join_into_the_stream():
    encoder, segmenter = OpusEncoder(), ogg.Segmenter(5)
    mic = GeneratedMicrophone(seconds=11)
    stream, cuts = b"", []
    while pcm := mic.read(1600):
        out = encoder.write(pcm)
        stream += out
        cuts += segmenter.feed(out)
    out = encoder.close()
    stream += out
    cuts += segmenter.feed(out) + segmenter.finish()
    assert b"".join(c.data for c in cuts) == stream
    assert [c.offset for c in cuts] == [0, len(cuts[0].data), len(cuts[0].data) + len(cuts[1].data)]
    for cut in cuts:
        pages = list(ogg.iter_pages(cut.data))
        assert b"".join(p.data for p in pages) == cut.data
    assert [round((c.granule_end - c.granule_start) / 48000) for c in cuts[:2]] == [5, 5]
    assert pages[-1].eos
    # about 24 kb/s
    assert 18_000 < len(stream) * 8 / 11 < 32_000


def test_segmenter_refuses_garbage():
    with pytest.raises(ogg.OggError):
        ogg.Segmenter().feed(b"NotOggS" + bytes(40))


def test_records_are_chained_signed_and_close_carries_the_stream_hash(recording, device_key, seal_key):
    kinds = [u.kind for u in recording]
    assert kinds == ["open", "segment", "segment", "segment", "close"]
    assert [u.seq for u in recording] == [0, 1, 2, 3, 4]
    prev = ZERO_HASH
    public = device_key.private_key.public_key()
    for u in recording:
        assert u.header["prev"] == prev
        assert crypto.verify_device_signature(public, u.signature, canonical(u.header))
        prev = sha256_hex(canonical(u.header))
    # Decrypting with the server's key gives the stream back; the close record hashes it.
    root = seal_key.unseal(recording[0].session, recording[0].header["sealed_key"])
    audio = b""
    for u in recording[1:-1]:
        key = crypto.segment_key_at(root, u.seq)
        part = crypto.decrypt_segment(key, crypto.b64d(u.header["nonce"]), u.session, u.seq, u.ciphertext)
        assert sha256_hex(part) == u.header["audio_sha256"] and u.header["offset"] == len(audio)
        audio += part
    close = recording[-1].header
    assert close["stream_sha256"] == hashlib.sha256(audio).hexdigest()
    assert close["stream_len"] == len(audio) and close["segments"] == 3
    assert audio.startswith(b"OggS") and b"OpusHead" in audio[:64]


def test_recorder_keeps_nothing_that_decrypts_what_it_sent(device_key, seal_key):
    recorder = Recorder(device_key, seal_key.public_key)
    recorder.open()
    encoder, mic, sent = OpusEncoder(), GeneratedMicrophone(seconds=6), []
    while pcm := mic.read(1600):
        sent += recorder.feed(encoder.write(pcm))
    assert len(sent) == 1
    # Every key the recorder still holds, and every key derivable forward from it, fails.
    state = [v for v in vars(recorder).values() if isinstance(v, bytes)]
    assert state, "the recorder holds its next chain key"
    u = sent[0]
    for chain in state:
        for _ in range(3):
            with pytest.raises(crypto.CryptoError):
                crypto.decrypt_segment(crypto.segment_key(chain), crypto.b64d(u.header["nonce"]), u.session, 1,
                                       u.ciphertext)
            chain = crypto.next_chain_key(chain)


def test_receipt_hash_goes_into_the_next_header(device_key, seal_key):
    clock = Clock()
    recorder = Recorder(device_key, seal_key.public_key, wall_us=clock.wall_us, mono_us=clock.mono_us)
    first = recorder.open()
    assert first.header["receipt"] is None and first.header["wall_us"] > 0
    recorder.note_receipt("ab" * 32)
    close = recorder.close()[-1]
    assert close.header["receipt"] == "ab" * 32 and close.header["segments"] == 0
    with pytest.raises(RecorderError):
        recorder.feed(b"")


def test_wav_microphone_converts_to_16k_mono(tmp_path):
    import array
    import wave

    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:  # 1 s of 44.1 kHz stereo
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(array.array("h", [1000, -1000] * 44100).tobytes())
    mic = WavMicrophone(path)
    pcm = b""
    while chunk := mic.read(1000):
        pcm += chunk
    assert abs(len(pcm) // 2 - 16000) < 400
    assert len(decode_to_pcm(pcm_to_wav(pcm))) == len(pcm)


def test_resumable_sha256_matches_hashlib_across_saved_states():
    import os

    from balise_evidence.midstate import ResumableSha256

    for size in (0, 1, 55, 56, 63, 64, 65, 1000, 4097):
        data = os.urandom(size)
        hasher = ResumableSha256()
        hasher.update(data[: size // 3])
        hasher = ResumableSha256.from_state(hasher.state())
        hasher.update(data[size // 3:])
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest(), size
    with pytest.raises(ValueError):
        ResumableSha256.from_state({"h": [0] * 8, "tail": "AA==", "length": 64})


def test_a_session_resumed_after_a_crash_goes_on_and_verifies(device_key, seal_key, tmp_path):
    """The process dies mid-recording: what was queued (each record with the state after
    it) goes on in a resumed recorder, next seq, next offset, a chained Ogg stream; the
    server takes every record and the exported package is intact and complete."""
    from balise_evidence import bag, verifier
    from balise_evidence.recorder import RecordingSession

    from .memory import MemoryServer

    clock = Clock()
    first = Recorder(device_key, seal_key.public_key, alert="7c0b6f0e-alert", segment_seconds=2, resumable=True,
                     wall_us=clock.wall_us, mono_us=clock.mono_us)
    queued: list = []
    state = None
    for upload in RecordingSession(GeneratedMicrophone(seconds=60, seed=4), first).run():
        queued.append(upload)
        state = first.state_after(upload.seq)
        if upload.seq == 3:
            break  # the crash: the pages not yet cut into a segment are lost with the process
    assert state is not None and state["seq"] == 3
    assert not [k for k in vars(first)["_states"] if k <= 3], "no older link kept"

    resumed = Recorder.resume(device_key, state, wall_us=clock.wall_us, mono_us=clock.mono_us)
    later = list(RecordingSession(GeneratedMicrophone(seconds=5, seed=5), resumed).run())
    assert [u.seq for u in later] == list(range(4, 4 + len(later))) and later[-1].kind == "close"
    assert later[0].header["offset"] == queued[-1].header["offset"] + queued[-1].header["audio_len"]
    assert later[0].header["prev"] == queued[-1].sha256

    server = MemoryServer(device_key, seal_key)
    for upload in queued + later:
        server.receive(upload)
    stream = server.stream()
    assert later[-1].header["stream_sha256"] == hashlib.sha256(stream).hexdigest()
    assert len(decode_to_pcm(stream)) > 2 * 16000 * 5  # both logical streams decode
    server.access("export")
    package = bag.build(server.export_input(), server.exporter, tmp_path / "case.zip")
    report = verifier.verify_path(package, server.trusted)
    assert report.status == 0, verifier.render(report)

    with pytest.raises(ValueError):
        Recorder.resume(crypto.DeviceKey.generate(), state)

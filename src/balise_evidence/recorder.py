"""The station-side recorder: microphone -> Ogg Opus -> sealed, signed segments.

Usage (see docs/evidence.md, "Wiring the station")::

    recorder = Recorder(device_key, server_seal_public_key, alert=alert_client_id)
    session = RecordingSession(microphone, recorder)
    for upload in session.run(stop_event.is_set):   # blocks while recording
        queue.put(upload.to_json())                  # the station's durable queue

The recorder keeps no key that decrypts what it has produced: the session root key is
sealed to the server and dropped at once, and each segment key comes from a one-way
chain whose previous links are forgotten.

A session can be taken up again after the process stopped (``Recorder.resume``): after
each record, ``state_after(seq)`` gives what the recorder needs to go on from that
record (seq, the previous header's hash, the next chain link, the stream's length and
running SHA-256). The caller stores it with the record, in one transaction. The resumed
session goes on with the next seq, at the next byte offset, with a new Ogg logical
stream chained after the previous one (RFC 3533: the stream stays one valid Ogg file).
The stored chain link decrypts only segments not yet recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import crypto, records
from .audio import RATE, Microphone, OpusEncoder
from .canonical import b64d, b64e, sha256_hex
from .midstate import ResumableSha256
from .ogg import Cut, Segmenter
from .records import SealedUpload

Clock = Callable[[], int]


class RecorderError(Exception):
    pass


@dataclass
class Recorder:
    device_key: crypto.DeviceKey
    server_seal_public: object  # X25519PublicKey
    alert: str | None = None
    session: str = field(default_factory=records.new_session_id)
    segment_seconds: int = 5
    wall_us: Clock = lambda: time.time_ns() // 1000  # noqa: E731
    mono_us: Clock = lambda: time.monotonic_ns() // 1000  # noqa: E731
    random: crypto.Random = os.urandom
    # keep, after each record, the state ``resume`` needs (it holds the next chain link:
    # the caller takes it with ``state_after`` and stores it with the record)
    resumable: bool = False

    def __post_init__(self) -> None:
        self._segmenter = Segmenter(self.segment_seconds)
        self._chain: bytes | None = None
        self._seq = 0
        self._prev: str | None = None
        self._receipt: str | None = None
        self._stream_hash = ResumableSha256()
        self._stream_len = 0
        self._closed = False
        self._states: dict[int, dict] = {}  # seq -> the state right after that record

    @classmethod
    def resume(cls, device_key: crypto.DeviceKey, state: dict, **kwargs) -> "Recorder":
        """The recorder of a session as ``state_after`` left it; ValueError if the state
        is not one (or was made with another device key)."""
        try:
            if state["device_key"] != device_key.fingerprint:
                raise ValueError("the session was recorded with another device key")
            recorder = cls(device_key, None, alert=state["alert"], session=state["session"],
                           segment_seconds=state["segment_seconds"], resumable=True, **kwargs)
            recorder._seq, recorder._prev, recorder._receipt = int(state["seq"]), str(state["prev"]), state["receipt"]
            recorder._chain = b64d(state["chain"])
            recorder._stream_len = int(state["stream_len"])
            recorder._stream_hash = ResumableSha256.from_state(state["stream_hash"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a recorder state ({exc})") from None
        recorder._segmenter = Segmenter(recorder.segment_seconds, _offset=recorder._stream_len)
        return recorder

    @property
    def is_open(self) -> bool:
        return self._prev is not None and not self._closed

    def state_after(self, seq: int) -> dict | None:
        """What ``resume`` needs to go on after record ``seq`` (None after the close record).
        The states of earlier records go with it: their chain links would decrypt it."""
        state = self._states.pop(seq, None)
        for earlier in [s for s in self._states if s < seq]:
            del self._states[earlier]
        return state

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> SealedUpload:
        if self._prev is not None:
            raise RecorderError("the session is already open")
        root = self.random(32)
        sealed = crypto.seal_session_key(self.server_seal_public, self.session, root, self.random)
        self._chain = crypto.first_chain_key(root)
        del root  # only the sealed copy leaves; the chain key cannot go back to it
        header = records.open_header(
            session=self.session, device_key=self.device_key.fingerprint,
            server_key=crypto.fingerprint(self.server_seal_public), sealed_key=sealed, alert=self.alert,
            wall_us=self.wall_us(), mono_us=self.mono_us(), segment_seconds=self.segment_seconds,
            receipt=self._receipt,
        )
        return self._sign(header)

    def feed(self, stream_bytes: bytes) -> list[SealedUpload]:
        """Feed Ogg Opus stream bytes; returns the segments completed by them."""
        self._require_open()
        return [self._segment(cut) for cut in self._segmenter.feed(stream_bytes)]

    def close(self, final_bytes: bytes = b"", reason: str = "stopped") -> list[SealedUpload]:
        """The last stream bytes (the muxer's trailer), the last segment and the close record."""
        uploads = self.feed(final_bytes)
        uploads += [self._segment(cut) for cut in self._segmenter.finish()]
        header = records.close_header(
            session=self.session, seq=self._seq + 1, prev=self._prev, device_key=self.device_key.fingerprint,
            stream_len=self._stream_len, stream_sha256=self._stream_hash.hexdigest(), segments=self._seq,
            reason=reason, wall_us=self.wall_us(), mono_us=self.mono_us(), receipt=self._receipt,
        )
        uploads.append(self._sign(header))
        self._chain = None
        self._closed = True
        return uploads

    def pause(self, final_bytes: bytes = b"") -> list[SealedUpload]:
        """The end of the Ogg logical stream in progress (its trailer, the last segment),
        without a close record: the session is resumed later (``resume``), or closed."""
        uploads = self.feed(final_bytes)
        uploads += [self._segment(cut) for cut in self._segmenter.finish()]
        self._segmenter = Segmenter(self.segment_seconds, _offset=self._stream_len)
        return uploads

    def note_receipt(self, receipt_sha256: str) -> None:
        """The hash of the latest server receipt seen; the next header carries it."""
        self._receipt = receipt_sha256

    # -- internals ---------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._prev is None or self._closed:
            raise RecorderError("the session is not open")

    def _segment(self, cut: Cut) -> SealedUpload:
        seq = self._seq + 1
        key = crypto.segment_key(self._chain)
        self._chain = crypto.next_chain_key(self._chain)  # forget the link that made ``key``
        nonce = self.random(12)
        ciphertext = crypto.encrypt_segment(key, nonce, self.session, seq, cut.data)
        del key
        header = records.segment_header(
            session=self.session, seq=seq, prev=self._prev, device_key=self.device_key.fingerprint,
            offset=cut.offset, audio=cut.data, ciphertext=ciphertext, nonce=nonce,
            granule_start=cut.granule_start, granule_end=cut.granule_end,
            wall_us=self.wall_us(), mono_us=self.mono_us(), receipt=self._receipt,
        )
        self._stream_hash.update(cut.data)
        self._stream_len += len(cut.data)
        self._seq = seq
        return self._sign(header, ciphertext)

    def _sign(self, header: dict, ciphertext: bytes | None = None) -> SealedUpload:
        upload = SealedUpload(header, self.device_key.sign(records.canonical(header)), ciphertext)
        self._prev = sha256_hex(upload.header_bytes)
        if self.resumable and self._chain is not None:
            self._states[upload.seq] = {
                "session": self.session, "alert": self.alert, "segment_seconds": self.segment_seconds,
                "device_key": self.device_key.fingerprint, "seq": upload.seq, "prev": self._prev,
                "receipt": self._receipt, "chain": b64e(self._chain), "stream_len": self._stream_len,
                "stream_hash": self._stream_hash.state()}
        return upload


@dataclass
class RecordingSession:
    """Microphone + encoder + recorder. ``run`` yields sealed uploads as they are made."""

    microphone: Microphone
    recorder: Recorder
    chunk_samples: int = RATE // 10
    realtime: bool = False  # pace a simulated microphone at the speed of a real one
    sleep: Callable[[float], None] = time.sleep

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            reason: str | Callable[[], str] = "stopped",
            pause: Callable[[], bool] = lambda: False) -> Iterator[SealedUpload]:
        """``reason`` (or what it returns once ``should_stop`` said yes) goes in the close
        record; unless ``pause`` then says yes: the session ends without one, to be resumed.
        A resumed recorder (already open) goes on with a new Ogg logical stream."""
        encoder = OpusEncoder()
        if not self.recorder.is_open:
            yield self.recorder.open()
        ended = False
        while not should_stop():
            pcm = self.microphone.read(self.chunk_samples)
            if not pcm:
                ended = True
                break
            yield from self.recorder.feed(encoder.write(pcm))
            if self.realtime:
                self.sleep(len(pcm) / 2 / RATE)
        if not ended and pause():
            yield from self.recorder.pause(encoder.close())
            return
        why = "source-ended" if ended else (reason() if callable(reason) else reason)
        yield from self.recorder.close(encoder.close(), reason=why)


def record_all(microphone: Microphone, recorder: Recorder) -> list[SealedUpload]:
    """Record a finite source to the end (tests, demos)."""
    return list(RecordingSession(microphone, recorder).run())


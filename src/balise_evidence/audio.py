"""The microphone, its simulated twin, the Ogg Opus encoder and the derived WAV.

Recording format: Ogg Opus, mono, 16 kHz input, about 24 kb/s (libopus through PyAV).
"""

from __future__ import annotations

import io
import math
import random
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

RATE = 16_000
CHANNELS = 1
BITRATE = 24_000
FRAME_SAMPLES = 320  # 20 ms, one Opus frame at 16 kHz


def _av() -> Any:
    """PyAV, imported on first use: it maps ffmpeg's libraries (over 20 MB resident), which
    an idle station must not carry; the import takes about 0.1 s when a recording starts."""
    import av

    return av


class Microphone(Protocol):
    """A source of 16 kHz mono signed 16-bit little-endian PCM."""

    def read(self, samples: int) -> bytes:
        """Up to ``samples`` samples; b"" once the source has ended."""


@dataclass
class GeneratedMicrophone:
    """A simulated microphone: a voice-like signal (gliding tones, bursts, noise),
    deterministic for a given seed, lasting ``seconds`` (None: endless)."""

    seconds: float | None = 10.0
    seed: int = 0
    _pos: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def read(self, samples: int) -> bytes:
        if self.seconds is not None:
            samples = min(samples, int(self.seconds * RATE) - self._pos)
        out = bytearray()
        for i in range(self._pos, self._pos + max(samples, 0)):
            t = i / RATE
            envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 3.1 * t)  # syllable-like bursts
            pitch = 180 + 60 * math.sin(2 * math.pi * 0.4 * t + self.seed)
            value = envelope * (
                5000 * math.sin(2 * math.pi * pitch * t) + 2000 * math.sin(2 * math.pi * 2.7 * pitch * t)
            ) + self._rng.gauss(0, 600)
            out += int(max(-32768, min(32767, value))).to_bytes(2, "little", signed=True)
        self._pos += max(samples, 0)
        return bytes(out)


@dataclass
class WavMicrophone:
    """A simulated microphone playing a WAV file (any rate or channel count: it is
    converted to 16 kHz mono)."""

    path: Path
    _pcm: bytes = b""
    _pos: int = 0

    def __post_init__(self) -> None:
        self._pcm = decode_to_pcm(Path(self.path).read_bytes())

    def read(self, samples: int) -> bytes:
        chunk = self._pcm[self._pos : self._pos + 2 * samples]
        self._pos += len(chunk)
        return chunk


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.chunks.append(bytes(b))
        return len(b)

    def drain(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


class OpusEncoder:
    """Encodes PCM into an Ogg Opus stream and hands the stream bytes out as the muxer
    writes them (an Ogg page about every ``page_seconds``)."""

    def __init__(self, bitrate: int = BITRATE, page_seconds: float = 1.0) -> None:
        self._av = _av()
        self._sink = _Sink()
        self._container = self._av.open(
            self._sink,
            "w",
            format="ogg",
            buffer_size=4096,
            options={"page_duration": str(int(page_seconds * 1_000_000))},
        )
        self._stream = self._container.add_stream("libopus", rate=RATE, layout="mono")
        self._stream.codec_context.bit_rate = bitrate
        self._pending = bytearray()
        self._pts = 0
        self._closed = False

    def write(self, pcm: bytes) -> bytes:
        """Feed PCM; returns the stream bytes produced so far (possibly b"")."""
        self._pending.extend(pcm)
        step = 2 * FRAME_SAMPLES
        while len(self._pending) >= step:
            self._encode(bytes(self._pending[:step]))
            del self._pending[:step]
        return self._sink.drain()

    def close(self) -> bytes:
        """Flush the encoder and the muxer; returns the last stream bytes."""
        if self._closed:
            return b""
        if self._pending:
            self._encode(bytes(self._pending) + b"\0" * (2 * FRAME_SAMPLES - len(self._pending)))
            self._pending.clear()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        return self._sink.drain()

    def _encode(self, pcm: bytes) -> None:
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.pts = self._pts
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def decode_to_pcm(data: bytes) -> bytes:
    """Any audio file PyAV reads, as 16 kHz mono s16le PCM."""
    av = _av()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    with av.open(io.BytesIO(data), "r") as container:
        for frame in container.decode(audio=0):
            for converted in resampler.resample(frame):
                out += bytes(converted.planes[0])[: converted.samples * 2]
    for converted in resampler.resample(None):
        out += bytes(converted.planes[0])[: converted.samples * 2]
    return bytes(out)


def pcm_to_wav(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return buf.getvalue()


def opus_to_wav(stream: bytes) -> bytes:
    """The derived WAV of an Ogg Opus stream (16 kHz mono, 16 bit)."""
    return pcm_to_wav(decode_to_pcm(stream))

"""The siren: a loud two-tone waveform on the speaker, for the alarm only.

The waveform is generated (no audio file to ship). Outputs: ``aplay`` or
``paplay`` fed raw PCM on their standard input when present, or the simulated
twins: a WAV file (to listen to afterwards) or nothing at all.
"""

from __future__ import annotations

import array
import asyncio
import logging
import math
import shutil
import sys
import wave
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

RATE = 16_000
CHUNK_S = 0.1
TONES_HZ = (440.0, 587.0)  # the French two-tone ("deux-tons"): A4 then D5, half a second each
TONE_S = 0.5


def siren_waveform(seconds: float = 1.0, volume: float = 1.0, rate: int = RATE) -> bytes:
    """Signed 16-bit little-endian mono PCM of the two-tone siren, phase-continuous.

    Odd harmonics make it harsh and loud like a real siren; the result loops
    seamlessly when ``seconds`` is a multiple of one full cycle (two tones).
    """
    n = int(seconds * rate)
    values = []
    phase = 0.0
    for i in range(n):
        freq = TONES_HZ[int(i / rate / TONE_S) % 2]
        phase += 2 * math.pi * freq / rate
        values.append(math.sin(phase) + math.sin(3 * phase) / 3 + math.sin(5 * phase) / 5)
    peak = max((abs(v) for v in values), default=1.0) or 1.0
    amp = 32000 * max(0.0, min(1.0, volume)) / peak
    samples = array.array("h", (int(amp * v) for v in values))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class Sink(Protocol):
    name: str

    async def open(self) -> None: ...
    async def write(self, pcm: bytes) -> None: ...
    async def close(self) -> None: ...


class PipeSink:
    """A sound player reading raw PCM on its standard input (aplay, paplay)."""

    COMMANDS = {
        "aplay": ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", str(RATE), "-c", "1", "-"],
        "paplay": ["paplay", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=1"],
    }

    def __init__(self, player: str, argv: list[str] | None = None) -> None:
        self.name = player
        self.argv = argv or self.COMMANDS[player]
        self._proc: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )

    async def write(self, pcm: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        if self._proc.returncode is not None:
            raise OSError(f"{self.name} exited with status {self._proc.returncode}")
        self._proc.stdin.write(pcm)
        await self._proc.stdin.drain()  # the player consumes in real time: this paces us

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()  # stop the sound now, not after the buffered second
            await self._proc.wait()
        self._proc = None


class PacedSink:
    """Simulated speaker: keeps real-time pace; writes to a WAV file when given one."""

    def __init__(self, wav_path: str | Path | None = None) -> None:
        self.name = "wav" if wav_path else "none"
        self.path = Path(wav_path) if wav_path else None
        self._wav: wave.Wave_write | None = None
        self.bytes_written = 0

    async def open(self) -> None:
        if self.path is not None:
            self._wav = wave.open(str(self.path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(RATE)

    async def write(self, pcm: bytes) -> None:
        if self._wav is not None:
            self._wav.writeframes(pcm)
        self.bytes_written += len(pcm)
        await asyncio.sleep(len(pcm) / 2 / RATE)

    async def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


def make_sink(output: str, wav_path: str = "") -> Sink:
    if output == "auto":
        for player in ("aplay", "paplay"):
            if shutil.which(player):
                return PipeSink(player)
        log.warning("no sound player (aplay, paplay) found: the siren will be silent")
        return PacedSink()
    if output in PipeSink.COMMANDS:
        return PipeSink(output)
    return PacedSink(wav_path if output == "wav" else None)


class Siren:
    """Plays the siren until ``stop()`` or ``max_duration_s``; starting it twice is harmless."""

    def __init__(self, sink: Sink, max_duration_s: float = 300.0, volume: float = 1.0) -> None:
        self.sink = sink
        self.max_duration_s = max_duration_s
        self._cycle = siren_waveform(2 * TONE_S, volume)
        self._task: asyncio.Task[None] | None = None
        self.started = 0
        self.muted = False  # a press while it sounds mutes it at once: the person hears the tap was felt
        self.acknowledged = 0

    def mute(self) -> None:
        self.muted = True

    def unmute(self) -> None:
        self.muted = False

    async def acknowledge(self) -> None:
        """Two short soft beeps after a tap stopped the siren: the tap was taken."""
        beep = siren_waveform(0.12, 0.2)[: int(0.12 * RATE) * 2]
        gap = bytes(int(0.08 * RATE) * 2)
        if self.playing:
            return
        self.acknowledged += 1
        if isinstance(self.sink, PacedSink) and self.sink.path is not None:
            log.info("tap acknowledged (two soft beeps; not added to %s)", self.sink.path.name)
            return
        try:
            await self.sink.open()
            await self.sink.write(beep + gap + beep)
        except OSError as exc:
            log.error("siren output failed: %s", exc)
        finally:
            await asyncio.shield(self.sink.close())

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.playing:
            return
        self.started += 1
        self.muted = False
        self._task = asyncio.create_task(self._play(), name="siren")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.max_duration_s
        chunk = int(CHUNK_S * RATE) * 2
        pos = 0
        log.info("siren on (%s)", self.sink.name)
        try:
            await self.sink.open()
            while (left := end - loop.time()) > 0:
                size = min(chunk, max(2, int(left * RATE) * 2))
                piece = bytes(size) if self.muted else (self._cycle[pos:] + self._cycle)[:size]
                pos = (pos + size) % len(self._cycle)
                await self.sink.write(piece)
        except OSError as exc:
            log.error("siren output failed: %s", exc)
        finally:
            await asyncio.shield(self.sink.close())
            log.info("siren off")

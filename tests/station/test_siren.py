"""The siren: its waveform, its simulated speaker, a real player subprocess, its limits."""

from __future__ import annotations

import array
import asyncio
import sys
import time
import wave

from balise_station.siren import RATE, PacedSink, PipeSink, Siren, make_sink, siren_waveform
from station_fakes import wait_for


def _zero_crossings(samples) -> int:
    return sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))


def test_waveform_is_loud_and_two_tone() -> None:
    pcm = siren_waveform(1.0)
    samples = array.array("h", pcm)
    assert len(samples) == RATE
    assert max(abs(s) for s in samples) > 25_000
    first, second = samples[: RATE // 2], samples[RATE // 2:]
    # a tone of f Hz crosses zero about 2f times a second (harmonics add a few)
    assert 2 * 440 * 0.5 * 0.98 <= _zero_crossings(first) <= 2 * 440 * 0.5 * 1.2
    assert 2 * 587 * 0.5 * 0.98 <= _zero_crossings(second) <= 2 * 587 * 0.5 * 1.2
    quiet = array.array("h", siren_waveform(0.1, volume=0.1))
    assert max(abs(s) for s in quiet) < 4_000


def test_siren_stops_at_its_limit_into_a_wav_file(tmp_path) -> None:
    path = tmp_path / "siren.wav"

    async def main():
        siren = Siren(PacedSink(path), max_duration_s=0.35)
        siren.start()
        siren.start()  # harmless
        assert siren.playing
        await wait_for(lambda: not siren.playing)
        assert siren.started == 1

    asyncio.run(main())
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        # never beyond its limit (a starved machine may write a little less than the limit)
        assert 0 < w.getnframes() / RATE <= 0.35 + 0.01


def test_siren_stops_when_asked() -> None:
    async def main():
        sink = PacedSink()
        siren = Siren(sink, max_duration_s=60)
        started = time.monotonic()
        siren.start()
        await wait_for(lambda: sink.bytes_written >= 0.2 * 2 * RATE)
        await siren.stop()
        elapsed = time.monotonic() - started
        assert not siren.playing
        written = sink.bytes_written
        await asyncio.sleep(0.2)  # nothing more may be written after the stop
        assert sink.bytes_written == written
        assert written / 2 / RATE <= elapsed + 0.15, "paced: never far ahead of real time"

    asyncio.run(main())


def test_player_subprocess_receives_the_pcm_and_is_killed_on_stop(tmp_path) -> None:
    out = tmp_path / "played.raw"
    player = [sys.executable, "-c",
              "import sys,time\nf=open(sys.argv[1],'wb')\n"
              "while (b := sys.stdin.buffer.read(3200)):\n f.write(b); f.flush(); time.sleep(0.1)",
              str(out)]

    async def main():
        sink = PipeSink("aplay", argv=player)
        siren = Siren(sink, max_duration_s=60)
        siren.start()
        await asyncio.sleep(0.8)
        await siren.stop()
        assert sink._proc is None

    asyncio.run(main())
    played = out.read_bytes()
    assert len(played) >= 3200 and played[:3200] == siren_waveform(1.0)[:3200]


def test_auto_output_without_a_player_is_silent_not_an_error(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert make_sink("auto").name == "none"
    assert make_sink("wav", "/tmp/x.wav").name == "wav"

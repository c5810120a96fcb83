"""Recording the room on an alarm: microphones and one recording per station.

A station has one microphone, so it makes one recording at a time: a second alarm
while one is recording joins that session (the deadline becomes the later one)
instead of opening a parallel recording of the same room. A recording starts with an
alarm (long press, or three presses on a press-only tag) and goes on after the siren
is silenced: the siren is noise, the recording is evidence, and a button that stops
it could be pressed by the aggressor. It also goes on after the alarm leaves the
server's open list (the heartbeat's ``open_alerts``, or a 409 on its fixes): every
closed alarm is recorded for ``alerts.after_close_s`` more (the station's after-close
window), and one cancelled under duress until the association closes it (the station
learns it from the heartbeat's sealed recording hint: ``Station._hint``). It stops when that
window has ended for every alert it records, at
``evidence.max_duration_s`` after the last alarm it joined, when the source ends, or
when the station shuts down with no alarm left open; the close record (with that
reason) is queued in every one of these cases.

A restart does not open a new session: every record is queued together with the
recorder's state after it (``Recorder.state_after``), so the next start takes the
session up again (``recover``, then the first ``start``) with the next seq, at the next
byte offset, the chain of headers and of segment keys going on. A station shut down
while an alarm is open ends its Ogg stream and queues its last segment without a close
record (``suspended``); one that crashed loses only the audio not yet cut into a
segment. If no alarm needs recording any more at the next start, the session gets its
close record then (``close_unresumed``).

Every sealed record goes to the durable queue (``Outbox.put_evidence``) as soon
as it is made; the upload lane sends it.
"""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from balise_evidence import crypto
from balise_evidence.audio import GeneratedMicrophone, Microphone, WavMicrophone
from balise_evidence.recorder import Recorder, RecordingSession
from balise_station.config import EvidenceConfig
from balise_station.outbox import Outbox

log = logging.getLogger(__name__)

RATE = 16_000


class SubprocessMicrophone:
    """A real microphone: ``arecord``/``parecord`` writing 16 kHz mono s16le PCM to a pipe."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def read(self, samples: int) -> bytes:
        """Blocks until ``samples`` samples came (a real source paces itself); b"" once it ended."""
        assert self._proc.stdout is not None
        want = 2 * samples
        chunks: list[bytes] = []
        while want > 0:
            data = self._proc.stdout.read(want)
            if not data:
                break
            chunks.append(data)
            want -= len(data)
        pcm = b"".join(chunks)
        return pcm[: len(pcm) - len(pcm) % 2]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def capture_argv(tool: str, device: str = "") -> list[str]:
    if tool == "arecord":
        return ["arecord", "-q", "-t", "raw", "-f", "S16_LE", "-r", str(RATE), "-c", "1"] + (["-D", device] if device else [])
    return ["parecord", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=1"] + (
        [f"--device={device}"] if device else [])


@dataclass(frozen=True)
class MicrophoneChoice:
    """What ``evidence.microphone`` resolved to: a factory (None: no recording) and whether it is simulated."""

    name: str
    make: Callable[[], Microphone] | None
    simulated: bool = False


def choose_microphone(cfg: EvidenceConfig, which: Callable[[str], str | None] = shutil.which) -> MicrophoneChoice:
    """``auto`` takes arecord, then parecord; it never falls back to a simulated source,
    which would make fake evidence on a real station."""
    mic = cfg.microphone
    if mic == "none":
        return MicrophoneChoice("none", None)
    if mic == "generated":
        return MicrophoneChoice("generated", lambda: GeneratedMicrophone(seconds=None, seed=random.randrange(1 << 30)),
                                simulated=True)
    if mic == "wav":
        path = cfg.wav_path
        return MicrophoneChoice("wav", lambda: WavMicrophone(path), simulated=True)
    tools = ("arecord", "parecord") if mic == "auto" else (mic,)
    for tool in tools:
        if which(tool):
            argv = capture_argv(tool, cfg.device)
            return MicrophoneChoice(tool, lambda: SubprocessMicrophone(argv))
    return MicrophoneChoice(f"{mic} (not found)", None)


@dataclass
class _Active:
    alert: str  # the alert that opened it
    session: str
    recorder: Recorder
    deadline: float = 0.0
    alerts: set[str] = field(default_factory=set)  # every alert it records (opened or joined)
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = "stopped"
    pause: bool = False  # stopped to be resumed at the next start: no close record
    thread: threading.Thread | None = None


class Recordings:
    """The recording in progress (at most one per station), in its own thread."""

    def __init__(self, outbox: Outbox, cfg: EvidenceConfig, microphone: MicrophoneChoice,
                 device_key: Callable[[], crypto.DeviceKey | None], seal_pem: Callable[[], str | None],
                 on_record: Callable[[], None] = lambda: None,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.outbox = outbox
        self.cfg = cfg
        self.microphone = microphone
        self.device_key = device_key
        self.seal_pem = seal_pem
        self.on_record = on_record  # called from the recording thread after each queued record
        self.wall = wall
        self.sleep = sleep
        self._active: dict[str, _Active] = {}  # session id -> recording (one at a time)
        self._lock = threading.Lock()
        self._unresumed: tuple[str, dict[str, Any], str] | None = None  # (alert, state, reason) of recover()

    def active(self) -> dict[str, str]:
        """alert client id -> session id, for every alert being recorded."""
        with self._lock:
            return {alert: a.session for a in self._active.values() for alert in a.alerts}

    def sessions(self) -> list[str]:
        with self._lock:
            return [a.session for a in self._active.values()]

    def start(self, alert: str, alarm_ts: float) -> str | None:
        """Records for the alert (until ``alarm_ts + max_duration_s`` at the latest): joins
        the recording in progress if there is one, else starts one. Returns the session
        id, or None when the station cannot record."""
        with self._lock:
            for a in self._active.values():
                if alert in a.alerts:
                    return a.session
                if not a.stop.is_set():
                    a.alerts.add(alert)
                    a.deadline = max(a.deadline, alarm_ts + self.cfg.max_duration_s)
                    log.info("alert %s joins the recording in progress %s", alert, a.session[:8])
                    return a.session
            finishing = [a.thread for a in self._active.values() if a.thread is not None]
        for thread in finishing:  # one that is closing: its close record first, then a new one
            thread.join(10.0)
        if self.microphone.make is None:
            log.error("alert %s: no microphone (%s): not recording", alert, self.microphone.name)
            return None
        key, seal = self.device_key(), self.seal_pem()
        if key is None or seal is None:
            log.error("alert %s: evidence not enrolled with the server yet: not recording", alert)
            return None
        try:
            mic = self.microphone.make()
        except (OSError, ValueError) as exc:
            log.error("alert %s: microphone %s unavailable (%s): not recording", alert, self.microphone.name, exc)
            return None
        recorder = self._take_unresumed(key)
        if recorder is None:
            recorder = Recorder(key, crypto.load_seal_public_key(seal), alert=alert,
                                segment_seconds=self.cfg.segment_seconds, resumable=True)
            self.outbox.evidence_session_started(recorder.session, alert)
        else:
            self.outbox.evidence_session_resumed(recorder.session)
            log.warning("alert %s: recording %s resumed after the restart", alert, recorder.session[:8])
        active = _Active(alert, recorder.session, recorder, deadline=alarm_ts + self.cfg.max_duration_s,
                         alerts={alert})
        active.thread = threading.Thread(target=self._record, args=(active, mic),
                                         name=f"recording-{alert[:8]}", daemon=True)
        with self._lock:
            self._active[active.session] = active
        active.thread.start()
        log.info("alert %s: recording (%s microphone)", alert, self.microphone.name)
        return recorder.session

    def stop(self, alert: str, reason: str) -> None:
        """The alert no longer needs recording; the recording stops once none of its alerts does."""
        with self._lock:
            active = next((a for a in self._active.values() if alert in a.alerts), None)
            if active is None:
                return
            if active.stop.is_set():
                return
            if active.alerts - {alert}:
                active.alerts.discard(alert)
                return
            # the last one: it stays listed until the close record is queued
            active.reason = reason
            active.stop.set()
        log.info("alert %s: recording stops (%s)", alert, reason)

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            threads = [a.thread for a in self._active.values() if a.thread is not None]
        for t in threads:
            t.join(timeout)

    def stop_all(self, reason: str, pause: bool = False) -> None:
        """``pause``: the station stops while an alarm still needs recording: no close
        record, the next start resumes the session."""
        with self._lock:
            for active in self._active.values():
                if not active.stop.is_set():
                    active.reason, active.pause = reason, pause
                    active.stop.set()

    # -- across a restart ------------------------------------------------------------
    def recover(self) -> str | None:
        """At start: the session the station was recording when it stopped (or crashed),
        kept for the first ``start``. One recording at a time, so at most one; an older one
        left over gets its close record at once."""
        unfinished = self.outbox.evidence_unfinished()
        for session, alert, state, reason in unfinished[1:]:
            self._close_from(session, state, reason)
        if not unfinished:
            return None
        session, alert, state, reason = unfinished[0]
        self._unresumed = (session, state, reason)
        return session

    def close_unresumed(self) -> None:
        """No alarm needed the recovered session: its close record goes now."""
        if self._unresumed is not None:
            session, state, reason = self._unresumed
            self._unresumed = None
            self._close_from(session, state, reason)

    def _take_unresumed(self, key: crypto.DeviceKey) -> Recorder | None:
        if self._unresumed is None:
            return None
        session, state, _reason = self._unresumed
        self._unresumed = None
        try:
            return Recorder.resume(key, state)
        except ValueError as exc:
            log.error("recording %s cannot be resumed (%s): a new one starts", session[:8], exc)
            self.outbox.evidence_session_ended(session, "interrupted", "station-restart")
            return None

    def _close_from(self, session: str, state: dict[str, Any], reason: str) -> None:
        key = self.device_key()
        try:
            if key is None:
                raise ValueError("no device key")
            recorder = Recorder.resume(key, state)
            for upload in recorder.close(reason=reason or "station-restart"):
                self.outbox.put_evidence(upload.session, upload.seq, upload.kind, upload.to_json())
        except ValueError as exc:
            log.error("recording %s cut by the restart cannot be closed (%s)", session[:8], exc)
            self.outbox.evidence_session_ended(session, "interrupted", "station-restart")
            return
        self.outbox.evidence_session_ended(session, "closed", reason or "station-restart")
        self.on_record()
        log.info("recording %s closed after the restart", session[:8])

    def note_receipt(self, session: str, receipt_sha256: str) -> None:
        """The next header of that session (if still recording) carries the latest receipt."""
        with self._lock:
            for a in self._active.values():
                if a.session == session:
                    a.recorder.note_receipt(receipt_sha256)

    def _record(self, active: _Active, mic: Microphone) -> None:
        def should_stop() -> bool:
            if not active.stop.is_set() and self.wall() >= active.deadline:
                active.reason = "max-duration"
                active.stop.set()
            return active.stop.is_set()

        speed = self.cfg.simulated_speed
        session = RecordingSession(mic, active.recorder, realtime=self.microphone.simulated,
                                   sleep=lambda s: self.sleep(s / speed))
        state, reason = "interrupted", "error"
        try:
            for upload in session.run(should_stop, lambda: active.reason, lambda: active.pause):
                self.outbox.put_evidence(upload.session, upload.seq, upload.kind, upload.to_json(),
                                         active.recorder.state_after(upload.seq))
                self.on_record()
                if upload.kind == "close":
                    state, reason = "closed", upload.header.get("reason", active.reason)
            if state != "closed":
                state, reason = "suspended", active.reason
        except Exception:
            log.exception("alert %s: recording failed", active.alert)
        finally:
            close = getattr(mic, "close", None)
            if close is not None:
                close()
            self.outbox.evidence_session_ended(active.session, state, reason)
            with self._lock:
                self._active.pop(active.session, None)
            log.info("alert %s: recording %s (%s)", active.alert, state, reason)


def describe(choice: MicrophoneChoice) -> dict[str, Any]:
    return {"microphone": choice.name, "simulated": choice.simulated, "available": choice.make is not None}

"""The station: buttons -> gestures -> alerts -> server (or modem), plus siren, fixes, heartbeats.

What happens on a gesture, in this order:

1. the alert is written to the durable queue with its client id and the best
   fix (milliseconds; after this it cannot be lost);
2. the alert lane posts it at once; the siren starts if it is an alarm;
3. a fallback timer starts: if the server has not accepted the alert after
   ``alerts.fallback_delay_s``, the modem sends the SMS itself and the alert
   goes on to the server marked ``sms_sent_by_device``;
4. while the alert is open, new fixes follow it to the server;
5. an alarm also records the room (``balise_station.recording``): sealed records
   go to the evidence lane of the queue, uploaded behind the alerts.

A single press while the siren sounds stops the siren (and raises no alert); the
recording goes on. An alert the server no longer lists as open (heartbeat
``open_alerts``) or closes (409 on its fixes) stops its siren at once, its fixes and
recording after the after-close window, or, under duress (the sealed recording hint),
once the association has closed it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from balise_evidence import hint
from balise_station import __version__
from balise_station.api import DeviceApi
from balise_station.buttons import ButtonSupervisor
from balise_station.config import StationConfig, valid_address
from balise_station.delivery import Sender
from balise_station.evidence import (KEY_CHECK_S, EvidenceLane, Refresh, ServerKeys, enrol, load_or_create_device_key,
                                     pinned_keys, refresh_keys)
from balise_station.fallback import send_alert_sms
from balise_station.gestures import ButtonMode, DecodedGesture, Edge, Gesture, GestureRouter
from balise_station.location import Fix, GpsdSource, LocationHub, SimulatedTrack
from balise_station.modem import GsmModem, probe
from balise_station.outbox import Outbox
from balise_station.recording import Recordings, choose_microphone, describe
from balise_station.siren import Siren, make_sink
from balise_station.waits import wait_event

log = logging.getLogger(__name__)

KIND_BY_GESTURE = {
    Gesture.SINGLE: "prevention",
    Gesture.DOUBLE: "emergency",
    Gesture.LONG: "alarm",
    Gesture.TRIPLE: "alarm",  # press-only tags: three presses stand in for the long press
}


HELD_META = "recording_hint"
CLOCK_FLOOR = datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()  # the server refuses earlier times


def alert_kind(gesture: Gesture, test_mode: bool = False, test_gesture: Gesture | None = None) -> str:
    """The alert a gesture raises. Test mode, or the configured test gesture, raises a test alert."""
    if test_mode or gesture is test_gesture:
        return "test"
    return KIND_BY_GESTURE[gesture]


def iso_now(wall: Callable[[], float]) -> str:
    return datetime.fromtimestamp(wall(), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Station:
    def __init__(
        self,
        cfg: StationConfig,
        *,
        api: DeviceApi | None = None,
        siren: Siren | None = None,
        modem_factory: Callable[[], GsmModem] | None = None,
        modem_probe: Callable[[], tuple[str, str]] | None = None,
        client_backend: type | None = None,
        scanner_backend: type | None = None,
        simulated_buttons: dict[str, ButtonMode] | None = None,
        test_mode: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.wall = wall
        self.test_mode = cfg.alerts.test_mode if test_mode is None else test_mode
        self.outbox = Outbox(cfg.db_path, clock=wall)
        self.api = api or DeviceApi(cfg.server.url, cfg.server.token, cfg.server.timeout_s)
        self.sender = Sender(self.outbox, self.api, clock=wall)
        self.sender.on_heartbeat_reply = self._heartbeat_reply
        self.sender.on_heartbeat_delivered = self._heartbeat_delivered
        self.sender.on_alert_closed = self._alert_closed
        self.sender.on_reachable = self._server_back
        self.sender.on_incident_over = lambda: self._heartbeat_now.set()
        self.hub = LocationHub(cfg.location.max_age_s, fixed=cfg.location.fixed)
        self.siren = siren or Siren(make_sink(cfg.siren.output, cfg.siren.wav_path),
                                    cfg.siren.max_duration_s, cfg.siren.volume)
        self.modem_factory = modem_factory
        self.modem_probe = modem_probe or (self._probe_modem if modem_factory is not None else None)
        self.modem_state = "absent" if modem_factory is None else "unknown"  # ok | unusable | absent
        self.modem_error = ""
        self.modem_checked_ts: float | None = None
        # a modem failure stays in the heartbeats until one of them reached the server, so a
        # failure that healed while the server was unreachable is still reported
        self._modem_failure_unreported = False
        self._modem_lock = asyncio.Lock()
        self._token_mtime = self._token_file_mtime()
        self.simulated_buttons = dict(simulated_buttons or {})
        modes = {b.name: b.mode for b in cfg.buttons}
        modes.update(self.simulated_buttons)
        self.router = GestureRouter(cfg.gestures, modes)
        self.supervisors = [
            ButtonSupervisor(b, cfg.bluetooth, self.button_edge, self._button_changed,
                             client_backend=client_backend, scanner_backend=scanner_backend, clock=clock)
            for b in cfg.buttons
        ]
        self.heartbeat_interval_s = cfg.heartbeat_interval_s
        self.gestures: list[DecodedGesture] = []
        self.on_gesture: Callable[[DecodedGesture, str | None], None] | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat_now = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self.started_ts = wall()
        self._siren_for: set[str] = set()
        # alert -> end of its after-close window (alerts.after_close_s after it left the
        # server's open list): recording and fixes go on silently until then
        self._after_close: dict[str, float] = {}
        # alerts that left the open list but that the server's sealed recording hint still
        # lists (cancelled under duress, not yet closed by the association): recorded and
        # tracked as open ones, without a window, siren off; kept across a restart
        self._held: set[str] = set(self.outbox.meta(HELD_META, []))
        self._tracked: set[str] = set()  # alerts whose fixes are being followed (_track)
        self._refreshing = False
        # evidence: device key, pinned server keys, microphone, recordings, upload lane
        self.device_key: Any = None
        self.server_keys: ServerKeys | None = None
        self.evidence_error = ""
        # the server's keys could not be followed (see refresh_evidence_keys): its key log
        # was refused, or receipts are signed by a key the log does not introduce
        self.key_log_refused = ""
        self.receipt_key_error = ""
        self._keys_lock = asyncio.Lock()
        self._key_watch_started = False
        self._uploader: Any = None
        self._http: Any = None
        self.microphone = choose_microphone(cfg.evidence)
        self.recordings = Recordings(self.outbox, cfg.evidence, self.microphone, lambda: self.device_key,
                                     lambda: self.server_keys.seal_public_pem if self.server_keys else None,
                                     on_record=self._evidence_queued, wall=wall)
        self.evidence_lane = EvidenceLane(self.outbox, self._evidence_uploader, self.sender.alerts_idle.wait,
                                          on_receipt=self._evidence_receipt, clock=wall,
                                          refresh_keys=self._receipt_key_unknown)

    # -- gestures -----------------------------------------------------------
    def button_edge(self, button: str, edge: Edge, t: float | None = None) -> None:
        """A press or release from any button (Bluetooth, keyboard, script)."""
        t = self.clock() if t is None else t
        if edge is Edge.PRESS and self.siren.playing:
            self.siren.mute()  # feedback at once; a single then stops it, another gesture brings it back
        for g in self.router.feed(button, edge, t):
            self._gesture(g)
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        deadline = self.router.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._poll_handle = loop.call_later(max(0.0, deadline - self.clock()), self._poll)

    def _poll(self) -> None:
        self._poll_handle = None
        for g in self.router.poll(self.clock()):
            self._gesture(g)
        self._schedule_poll()

    def _gesture(self, g: DecodedGesture) -> None:
        self.gestures.append(g)
        log.info("gesture %s on button %s", g.gesture.value, g.button)
        if g.gesture is Gesture.SINGLE and self.siren.playing:
            self._spawn(self._siren_stopped_by_tap())
            self._siren_for.clear()
            log.info("siren stopped by a single press (any recording goes on)")
            if self.on_gesture:
                self.on_gesture(g, None)
            return
        self.siren.unmute()
        cid = self.raise_alert(alert_kind(g.gesture, self.test_mode, self.cfg.alerts.test_gesture),
                               g.gesture.value, g.button)
        if self.on_gesture:
            self.on_gesture(g, cid)

    async def _siren_stopped_by_tap(self) -> None:
        await self.siren.stop()
        await self.siren.acknowledge()

    # -- alerts --------------------------------------------------------------
    def raise_alert(self, kind: str, gesture: str, button: str = "") -> str:
        """Queues a new alert durably and starts everything that follows it. Returns its client id."""
        cid = str(uuid.uuid4())
        fix = self.hub.best()
        self.outbox.add_alert(cid, kind, gesture, iso_now(self.wall), [fix.to_api()] if fix else [], button)
        self.sender.kick()
        log.info("alert %s raised: %s", cid, kind)
        if kind == "alarm":
            self.siren.start()
            self._siren_for.add(cid)
            if self.cfg.evidence.enabled:
                self.recordings.start(cid, self.wall())
        self._spawn(self._fallback_after(cid))
        self._spawn(self._track(cid, fix))
        return cid

    async def _fallback_after(self, cid: str) -> None:
        row = self.outbox.alert(cid)
        if row is None:
            return
        await asyncio.sleep(max(0.0, row.created_ts + self.cfg.alerts.fallback_delay_s - self.wall()))
        await self.fallback(cid)

    async def fallback(self, cid: str) -> None:
        """Sends the alert SMS through the modem if the server still does not have the alert."""
        async with self.sender.lock(cid):  # no attempt in flight while we decide
            row = self.outbox.alert(cid)
            if row is None or row.state == "delivered" or row.fallback in ("done", "skipped"):
                return
            if self.modem_factory is None:
                log.warning("alert %s not yet with the server and no modem configured", cid)
                return
            contacts = self.outbox.contacts()
            if contacts is None:
                log.error("alert %s: no local copy of the contacts: the modem cannot help yet", cid)
                self._spawn(self._fallback_again(cid))
                return
            best = self.hub.best()
            fix = best.to_api() if best else (row.fixes[0] if row.fixes else None)
            log.warning("alert %s not accepted by the server within %.0f s: sending SMS by modem",
                        cid, self.cfg.alerts.fallback_delay_s)
            async with self._modem_lock:
                result = await asyncio.to_thread(
                    send_alert_sms, self.modem_factory, cid, row.kind, fix, contacts[0],
                    self.outbox.sms_record(cid),
                    lambda contact_id, state, detail: self.outbox.record_sms(cid, contact_id, state, detail),
                )
            self.outbox.set_fallback(cid, result.state, result.all_sent)
            log.info("alert %s: modem fallback %s (%d sent, %d failed)", cid, result.state, result.sent,
                     result.failed)
            if result.state in ("failed", "partial"):
                self._modem_seen("unusable", result.error or "an SMS could not be sent")
                self._spawn(self._fallback_again(cid))
            elif result.sent:
                self._modem_seen("ok", "")
        self.sender.kick()

    async def _fallback_again(self, cid: str) -> None:
        """A modem failure (or no contacts yet) is tried again while the station runs, until
        the server has the alert or every recipient got the SMS."""
        await asyncio.sleep(self.cfg.modem.retry_s)
        await self.fallback(cid)

    # -- the modem's health --------------------------------------------------------
    def _probe_modem(self) -> tuple[str, str]:
        assert self.modem_factory is not None
        m = self.modem_factory()
        return probe(m.port, m.baudrate, min(m.timeout_s, 3.0), m._factory)

    def _modem_seen(self, state: str, error: str) -> None:
        self.modem_checked_ts = self.wall()
        if state == "unusable" and self.modem_state != "unusable":
            self._modem_failure_unreported = True
        if state != self.modem_state:
            if state == "ok":
                log.info("modem answers again" if self.modem_state == "unusable" else "modem answers")
            else:
                log.error("modem unusable: %s", error)
            self.modem_state = state
            self._heartbeat_now.set()  # the server learns it (at once, or when it is reachable again)
        self.modem_error = error

    async def check_modem(self) -> str:
        """An AT probe ("AT" -> "OK", with a timeout), never while an SMS is being sent."""
        if self.modem_probe is None:
            return self.modem_state
        async with self._modem_lock:
            state, error = await asyncio.to_thread(self.modem_probe)
        self._modem_seen(state, error)
        return state

    async def _modem_watch(self) -> None:
        while True:
            await self.check_modem()
            await asyncio.sleep(self.cfg.modem.check_interval_s)

    # -- the server's reachability and the token ------------------------------------------
    def _token_file_mtime(self) -> float | None:
        try:
            return self.cfg.token_path.stat().st_mtime
        except OSError:
            return None

    def _reload_token(self) -> bool:
        """`balise-station pair CODE` wrote a new token: use it now, and try again at once
        the alerts the old one could not deliver."""
        mtime = self._token_file_mtime()
        if mtime is None or mtime == self._token_mtime:
            return False
        self._token_mtime = mtime
        try:
            token = self.cfg.token_path.read_text(encoding="utf-8").strip()
        except OSError:
            return False
        if not token or any(c.isspace() for c in token):
            return False
        self.api.set_token(token)
        self.cfg = replace(self.cfg, server=replace(self.cfg.server, token=token))
        self._drop_uploader()  # the evidence uploader holds the old token
        refused = self.outbox.retry_refused()
        log.warning("new device token (the station was paired again): %d refused alert(s) sent again", refused)
        self.sender.kick()
        self._spawn(self.refresh_contacts())
        return True

    async def check_server(self) -> bool:
        """The cheap call that checks the server and the token (GET /contacts, short timeout):
        a server that is gone is noticed within check_interval_s + check_timeout_s."""
        self._reload_token()
        result = await self.api.contacts(timeout_s=self.cfg.server.check_timeout_s)
        self.sender.seen(result)
        if result.ok and isinstance(result.body, dict) and isinstance(result.body.get("contacts"), list):
            cached = self.outbox.contacts()
            if cached is None or cached[0] != result.body:
                self.outbox.save_contacts(result.body)
                log.info("contacts refreshed (%d)", len(result.body["contacts"]))
        return result.ok

    async def _server_watch(self) -> None:
        while True:
            await self.check_server()
            await asyncio.sleep(self.cfg.server.check_interval_s)

    async def _track(self, cid: str, first: Fix | None) -> None:
        """Sends new fixes for the alert while it is open (server says closed, or track_for_s passed)."""
        self._tracked.add(cid)
        try:
            await self._track_fixes(cid, first)
        finally:
            self._tracked.discard(cid)

    async def _track_fixes(self, cid: str, first: Fix | None) -> None:
        alerts = self.cfg.alerts
        row = self.outbox.alert(cid)
        if row is None:
            return
        last = first.recorded_at if first else None
        while self.wall() < row.created_ts + alerts.track_for_s:
            await asyncio.sleep(alerts.fix_interval_s)
            row = self.outbox.alert(cid)
            self._end_after_close()
            if row is None or (row.closed and cid not in self._held
                               and self.wall() >= self._after_close.get(cid, 0.0)):
                return
            fix = self.hub.best()
            if fix is None or fix.source == "fixed" or (last is not None and fix.recorded_at <= last):
                continue
            last = fix.recorded_at
            self.outbox.add_fix(cid, replace(fix, id=str(uuid.uuid4())).to_api())
            self.sender.kick()

    def _recover(self) -> None:
        """After a restart: pending alerts get their fallback timer back, open ones their
        tracking, and open alarms their recording: the session the restart cut is resumed
        (one for all of them), or closed if no alarm needs it any more."""
        if (session := self.recordings.recover()) is not None:
            log.warning("recording %s was cut by a restart: resumed if an alarm still needs it", session[:8])
        held = tuple(self._held)
        marks = ",".join("?" * len(held))
        for row in self.outbox.alerts(f"state = 'pending' OR (state = 'delivered' AND (closed = 0"
                                      f" OR client_id IN ({marks})))", held):
            if row.state == "pending":
                self._spawn(self._fallback_after(row.client_id))
            self._follow(row.client_id)
        self.recordings.close_unresumed()

    def _follow(self, cid: str) -> None:
        """Tracking and (for an alarm) recording of an alert raised before, within their
        bounds (alerts.track_for_s, evidence.max_duration_s after the alert)."""
        row = self.outbox.alert(cid)
        if row is None:
            return
        if cid not in self._tracked and self.wall() < row.created_ts + self.cfg.alerts.track_for_s:
            self._spawn(self._track(cid, None))
        if (row.kind == "alarm" and self.cfg.evidence.enabled
                and self.wall() < row.created_ts + self.cfg.evidence.max_duration_s):
            self.recordings.start(cid, row.created_ts)

    def _alert_closed(self, cid: str) -> None:
        """The alert left the server's open list: resolved, cancelled, or cancelled under
        duress, which the station cannot tell from a cancel (and must not: the aggressor may
        watch it). So for every one alike the siren stops at once, and the recording and the
        fixes go on silently for ``alerts.after_close_s``, then stop."""
        self._silence(cid)
        if cid not in self._held:
            self._after_close.setdefault(cid, self.wall() + self.cfg.alerts.after_close_s)
        self._end_after_close()

    def _hint(self, text: Any) -> None:
        """The heartbeat's recording hint (balise_evidence.hint), sealed to the evidence
        key: the alerts under duress the association has not closed. Those listed are
        recorded and tracked as open ones (siren off, no after-close window); one no longer
        listed was closed by the association: its recording and tracking end now. Nothing
        is logged or shown about it: whoever looks at the station sees an alert that left
        the open list, and a recording that goes on."""
        if not isinstance(text, str) or self.device_key is None:
            return  # an older server, or no evidence key (then the after-close window stands)
        try:
            listed = set(hint.open_hint(self.device_key, text))
        except ValueError:
            log.error("heartbeat reply: a field could not be read with the station's key")
            return
        listed = {cid for cid in listed if self.outbox.alert(cid) is not None}
        if listed == self._held:
            return
        added, released = listed - self._held, self._held - listed
        self._held = listed
        self.outbox.set_meta(HELD_META, sorted(listed))
        for cid in added:  # as for an open alarm (a hint may come after its window ended)
            self._after_close.pop(cid, None)
            self._silence(cid)
            self._follow(cid)
        for cid in released:
            self._after_close[cid] = self.wall()  # closed by the association: ends now
        self._end_after_close()

    def _end_after_close(self) -> None:
        """Stops the recording of every alert whose after-close window has ended (the
        tracking loop sees it by itself); the recording writes its close record."""
        now = self.wall()
        for cid, until in self._after_close.items():
            if now >= until and cid not in self._held:
                self.recordings.stop(cid, "alert-closed")

    def _silence(self, cid: str) -> None:
        """The siren no longer sounds for this alert (it stops when no alert needs it)."""
        if cid in self._siren_for:
            self._siren_for.discard(cid)
            if not self._siren_for and self.siren.playing:
                log.info("alert %s closed on the server: siren stopped", cid)
                self._spawn(self.siren.stop())

    # -- evidence ---------------------------------------------------------------------
    def _evidence_queued(self) -> None:
        """From a recording thread: a record is in the queue."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.evidence_lane.kick)

    def _evidence_uploader(self) -> Any:
        if self._uploader is None and self.server_keys is not None:
            import httpx

            from balise_evidence.uploader import Uploader

            if self._http is None:  # kept when only the keys change (an upload may be using it)
                self._http = httpx.Client(timeout=self.cfg.evidence.upload_timeout_s, follow_redirects=False)
            self._uploader = Uploader(self.cfg.server.url + "/api/v1", self.cfg.server.token,
                                      server_signing_pem=self.server_keys.signing_public_pem, client=self._http)
        return self._uploader

    def _evidence_receipt(self, session: str, sha256: str) -> None:
        self.receipt_key_error = ""  # a receipt verified with the pinned key
        self.recordings.note_receipt(session, sha256)

    @property
    def evidence_keys_error(self) -> str:
        return self.key_log_refused or self.receipt_key_error

    def _drop_uploader(self) -> None:
        self._uploader = None
        if self._http is not None:
            self._http.close()
            self._http = None

    async def refresh_evidence_keys(self) -> Refresh:
        """Reads the server's key log; new keys are pinned only if it chains to the pinned
        signing key. A new seal key is for the next sessions (the one in progress keeps
        the key it was opened with: the server opens a session with the key it names)."""
        async with self._keys_lock:
            outcome = await refresh_keys(self.api, self.outbox)
            if outcome.changed:
                self.server_keys = outcome.keys
                self._uploader = None  # the next upload checks receipts with the new signing key
            if not outcome.error:
                self.key_log_refused = outcome.refused
            return outcome

    async def _receipt_key_unknown(self, exc: Exception) -> bool:
        """From the lane: a receipt the pinned signing key does not verify. True when the
        keys changed (the lane checks the receipt again)."""
        before = self.server_keys
        outcome = await self.refresh_evidence_keys()
        if outcome.changed or self.server_keys != before:
            self.receipt_key_error = ""
            return True
        if not outcome.error and not outcome.refused:
            self.receipt_key_error = ("receipts are signed by a key that the server's key log does not "
                                      "introduce after the pinned signing key: records kept, retried")
            log.error("evidence: %s", self.receipt_key_error)
        return False

    async def _key_watch(self) -> None:
        """The key log at start and every KEY_CHECK_S: rotations reach the station even
        with no receipt to refuse (a new seal key)."""
        while True:
            outcome = await self.refresh_evidence_keys()
            if outcome.error:
                log.info("evidence: %s", outcome.error)
            await asyncio.sleep(KEY_CHECK_S)

    def _server_back(self) -> None:
        log.warning("server reachable again: sending what waited")
        self.outbox.due_now()
        self._heartbeat_now.set()
        self.sender.kick()
        self.outbox.evidence_retry_now()
        self.evidence_lane.kick()

    async def _enrol(self) -> None:
        """Evidence enrolment on first run (and until it succeeds): device key, pinned server keys."""
        try:
            self.device_key = load_or_create_device_key(self.cfg.device_key_path)
        except (OSError, ValueError) as exc:
            self.evidence_error = f"device key unusable: {exc}"
            log.error("evidence: %s; alarms will not be recorded", self.evidence_error)
            return
        delay = 5.0
        while True:
            result = await enrol(self.api, self.outbox, self.device_key)
            if result.done:
                self.server_keys, self.evidence_error = result.keys, ""
                self.evidence_lane.kick()
                if not self._key_watch_started:
                    self._key_watch_started = True
                    self._spawn(self._key_watch())
                return
            self.evidence_error = result.error
            log.warning("evidence enrolment: %s", result.error)
            if not result.retry:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300.0)

    def _watching_alerts(self) -> bool:
        """An open alert (or a recording) whose closing on the server must be noticed soon."""
        if self.recordings.active() or self._held:
            return True
        if any(until > self.wall() for until in self._after_close.values()):
            return True
        since = self.wall() - self.cfg.alerts.track_for_s
        return bool(self.outbox.alerts("state = 'delivered' AND closed = 0 AND created_ts > ?", (since,)))

    # -- heartbeats, contacts, status -----------------------------------------------
    def heartbeat_payload(self) -> dict[str, Any]:
        buttons = [s.state.to_dict() for s in self.supervisors]
        buttons += [{"hardware_id": f"simulated:{name}", "connected": True, "battery_percent": None}
                    for name in self.simulated_buttons]
        batteries = [b["battery_percent"] for b in buttons if b.get("battery_percent") is not None]
        def since(ts: float | None) -> dict[str, str]:
            # a board without a clock may believe it is 1970: the server refuses such times (and
            # with them the whole heartbeat), so a time before 2020 is left out
            ts = ts or self.started_ts
            return {"since": iso_now(lambda: ts)} if ts >= CLOCK_FLOOR else {}

        return {
            "battery_percent": min(batteries) if batteries else None,
            "button_connected": bool(buttons) and all(b["connected"] for b in buttons),
            "station_version": __version__,
            # each button: hardware_id (older servers) and address, connected, since (its last change)
            "buttons": [{"hardware_id": b["hardware_id"], "connected": b["connected"],
                         "battery_percent": b["battery_percent"],
                         **({"address": b["hardware_id"]} if valid_address(b["hardware_id"]) else {}),
                         **since(b.get("since_ts"))}
                        for b in buttons],
            "microphone": ("absent" if not self.cfg.evidence.enabled  # evidence.microphone = "none"
                           else "ok" if self.microphone.make is not None else "unusable"),
            **({"modem": self._reported_modem_state()} if self.modem_state != "unknown" else {}),  # not probed: unsaid
            **({"incidents": incidents} if (incidents := self._incidents()) else {}),
        }

    def _incidents(self) -> list[dict[str, Any]]:
        """Episodes over and not yet taken by the server (the server unreachable, alerts
        or evidence it refused): in every heartbeat until one reaches it, then one
        supervision event each. Evidence refusals so far make one episode."""
        return [{"id": i["id"], "kind": i["kind"], "started": iso_now(lambda: i["started_ts"]),
                 "ended": iso_now(lambda: i["ended_ts"]), "count": i["count"]}
                for i in self.outbox.incidents_to_report(ending=("evidence_rejected",))
                if i["started_ts"] >= CLOCK_FLOOR]  # a board that believes it is 1970 cannot date them

    def _reported_modem_state(self) -> str:
        return "unusable" if self._modem_failure_unreported else self.modem_state

    def _heartbeat_delivered(self, payload: dict[str, Any]) -> None:
        if payload.get("incidents"):
            self.outbox.incidents_reported([i["id"] for i in payload["incidents"]])
        if payload.get("modem") == "unusable" and self._modem_failure_unreported:
            self._modem_failure_unreported = False
            if self.modem_state != "unusable":
                self._heartbeat_now.set()  # the server learnt the failure: now that it healed

    def _button_changed(self) -> None:
        self._heartbeat_now.set()

    def _heartbeat_reply(self, body: dict[str, Any], sent_ts: float) -> None:
        if not self._refreshing:  # the modem's copy of the contacts follows every heartbeat
            self._spawn(self.refresh_contacts())
        interval = body.get("heartbeat_interval_s")
        if isinstance(interval, (int, float)) and 5 <= interval <= 86400:
            self.heartbeat_interval_s = float(interval)
        self._hint(body.get("recording_hint"))
        listed = body.get("open_alerts")
        if not isinstance(listed, list):  # an older server: it says nothing about closing
            return
        still_open = {str(a.get("client_id")) for a in listed if isinstance(a, dict)}
        for row in self.outbox.alerts("state = 'delivered' AND closed = 0"):
            # only alerts the server had before this heartbeat left can be missing from its reply
            if row.client_id not in still_open and row.delivered_ts is not None and row.delivered_ts < sent_ts:
                log.info("alert %s is no longer open on the server", row.client_id)
                self.outbox.alert_closed(row.client_id)
                self._alert_closed(row.client_id)
        self._end_after_close()

    async def _heartbeats(self) -> None:
        """Every heartbeat_interval_s, or open_check_interval_s while an alert is open (its reply
        says which alerts are still open), and soon after a button connects or drops."""
        check = self.cfg.alerts.open_check_interval_s
        last: float | None = None
        while True:
            interval = check if self._watching_alerts() else self.heartbeat_interval_s
            if last is None or self._heartbeat_now.is_set() or self.clock() - last >= interval:
                self.outbox.put_heartbeat(self.heartbeat_payload())
                self.sender.kick()
                self._heartbeat_now.clear()
                last = self.clock()
            if await wait_event(self._heartbeat_now, min(check, self.heartbeat_interval_s)):
                await asyncio.sleep(1.0)  # let a burst of changes settle into one heartbeat

    async def refresh_contacts(self) -> bool:
        self._refreshing = True
        try:
            result = await self.api.contacts()
        finally:
            self._refreshing = False
        if result.ok and isinstance(result.body, dict) and isinstance(result.body.get("contacts"), list):
            self.outbox.save_contacts(result.body)
            log.info("contacts refreshed (%d)", len(result.body["contacts"]))
            return True
        log.warning("contacts not refreshed: %s", result.error or "unexpected reply")
        return False

    async def _contacts(self) -> None:
        # A failed refresh is retried soon, then less often: the modem fallback needs the
        # contacts, and a first start on a slow network must not wait a whole minute.
        retry = 2.0
        while True:
            if await self.refresh_contacts():
                retry = 2.0
                await asyncio.sleep(self.cfg.contacts_refresh_s)
            else:
                await asyncio.sleep(min(retry, 60.0, self.cfg.contacts_refresh_s))
                retry *= 2

    def status(self) -> dict[str, Any]:
        contacts = self.outbox.contacts()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "updated_ts": self.wall(),
            "started_ts": self.started_ts,
            "test_mode": self.test_mode,
            "buttons": [s.state.to_dict() for s in self.supervisors]
            + [{"name": n, "hardware_id": f"simulated:{n}", "kind": "simulated", "connected": True}
               for n in self.simulated_buttons],
            "server_reachable": self.sender.server_reachable,
            "token_refused": self.sender.token_refused,
            "last_server_success_ts": self.sender.last_success_ts,
            "siren_playing": self.siren.playing,
            "modem": self.modem_factory is not None,
            "modem_state": self.modem_state,
            "modem_error": self.modem_error,
            "modem_checked_ts": self.modem_checked_ts,
            "location_sources": self.hub.sources_seen() + (["fixed"] if self.cfg.location.fixed else []),
            "contacts": len(contacts[0].get("contacts", [])) if contacts else None,
            "contacts_fetched_ts": contacts[1] if contacts else None,
            "queue": self.outbox.counts(),
            "evidence": {
                **describe(self.microphone),
                "enabled": self.cfg.evidence.enabled,
                "enrolled": self.server_keys is not None,
                "error": self.evidence_error,
                "keys_error": self.evidence_keys_error,
                "signing_key": self.server_keys.signing_fingerprint if self.server_keys else None,
                "seal_key": self.server_keys.seal_fingerprint if self.server_keys else None,
                "recording_alerts": sorted(self.recordings.active()),
                "last_receipt_ts": self.evidence_lane.last_receipt_ts,
            },
        }

    def write_status(self) -> None:
        path: Path = self.cfg.status_path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1))
        os.replace(tmp, path)

    async def _status_writer(self) -> None:
        while True:
            self.write_status()
            await asyncio.sleep(5.0)

    # -- lifecycle -----------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("station task failed", exc_info=task.exception())

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if refused := self.outbox.retry_refused():  # a restart follows a re-pairing: try them now
            log.warning("%d alert(s) refused by the server before: trying again", refused)
        loc = self.cfg.location
        if "gpsd" in loc.sources:
            self._spawn(GpsdSource(loc.gpsd, self.hub).run())
        if "simulated" in loc.sources:
            self._spawn(SimulatedTrack(loc.simulated, self.hub).run())
        self._spawn(self.sender.run_alerts())
        self._spawn(self.sender.run_background())
        self._spawn(self.evidence_lane.run())
        self._spawn(self._heartbeats())
        self._spawn(self._contacts())
        self._spawn(self._server_watch())
        if self.modem_probe is not None:
            self._spawn(self._modem_watch())
        self._spawn(self._status_writer())
        for sup in self.supervisors:
            self._spawn(sup.run())
        if self.cfg.evidence.enabled:
            self.device_key = None
            self.server_keys = pinned_keys(self.outbox)
            enrolment = self._spawn(self._enrol())
            if self.server_keys is not None:  # already enrolled: the key is on disk, load it now
                await enrolment
        self._recover()
        log.info("station %s started (%d button(s)%s)", __version__, len(self.supervisors),
                 ", test mode" if self.test_mode else "")

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        # an alarm still open: the recording is suspended, and resumed at the next start
        self.recordings.stop_all("shutdown", pause=any(
            cid in self._held or (row is not None and not row.closed)
            for cid, row in ((c, self.outbox.alert(c)) for c in self.recordings.active())))
        await asyncio.to_thread(self.recordings.join, 30.0)  # their last records reach the queue
        await self.siren.stop()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=10.0)
            for t in stuck:  # a bug, not a reason to never stop: say which one
                log.error("station task %s did not stop when cancelled", t.get_coro())
        try:
            self.write_status()
        except OSError:
            pass
        await self.api.aclose()
        if self._http is not None:
            self._http.close()
        self.outbox.close()

"""Bluetooth buttons through bleak: one supervisor per button.

Two kinds of button:

* ``led-button``: the Nordic LED-Button layout, press and release notified on
  characteristic 1524 (1 = pressed, 0 = released);
* ``itag``: iTag-style press-only tags notifying presses on 0xFFE1. On every
  connection the station writes 0 ("no alert") to the tag's Link Loss alert
  level, so the tag never beeps when the link drops: a beep in the room is
  exactly what the person must not get.

The supervisor scans for its button before every connection, uses a fresh
``BleakClient`` each time, backs off between attempts, reads the battery level,
and reports connected/disconnected for the heartbeat and ``status``. The bleak
backends can be replaced (``client_backend``, ``scanner_backend``): that is
how the tests run without Bluetooth.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_16, normalize_uuid_str

from balise_station.config import BluetoothConfig, ButtonConfig
from balise_station.gestures import Edge
from balise_station.waits import wait_event

log = logging.getLogger(__name__)

LED_BUTTON_SERVICE = normalize_uuid_str("00001523-1212-efde-1523-785feabcd123")
LED_BUTTON_CHAR = normalize_uuid_str("00001524-1212-efde-1523-785feabcd123")
ITAG_SERVICE = normalize_uuid_16(0xFFE0)
ITAG_CHAR = normalize_uuid_16(0xFFE1)
LINK_LOSS_SERVICE = normalize_uuid_16(0x1803)
ALERT_LEVEL_CHAR = normalize_uuid_16(0x2A06)
BATTERY_SERVICE = normalize_uuid_16(0x180F)
BATTERY_LEVEL_CHAR = normalize_uuid_16(0x2A19)

BUTTON_SERVICE = {"led-button": (LED_BUTTON_SERVICE, LED_BUTTON_CHAR), "itag": (ITAG_SERVICE, ITAG_CHAR)}

EdgeCallback = Callable[[str, Edge, float], None]


def edge_from_notification(kind: str, data: bytes | bytearray) -> Edge | None:
    """What a button notification means: a press, a release, or nothing we know."""
    if kind == "itag":
        return Edge.PRESS
    if len(data) >= 1 and data[0] == 1:
        return Edge.PRESS
    if len(data) >= 1 and data[0] == 0:
        return Edge.RELEASE
    return None


def guess_kind(service_uuids: list[str], name: str | None) -> str | None:
    """The kind of a button from its advertisement, for ``pair``."""
    uuids = {normalize_uuid_str(u) for u in service_uuids}
    if LED_BUTTON_SERVICE in uuids:
        return "led-button"
    if ITAG_SERVICE in uuids or (name or "").strip().lower() in ("itag", "itag tracker", "tag"):
        return "itag"
    return None


@dataclass
class ButtonState:
    name: str
    address: str
    kind: str
    connected: bool = False
    battery_percent: int | None = None
    last_connected_ts: float | None = None
    last_edge_ts: float | None = None
    disconnects: int = 0
    last_error: str = ""
    since_ts: float = field(default_factory=time.time)  # the last change of ``connected``

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "hardware_id": self.address, "kind": self.kind, "connected": self.connected,
            "battery_percent": self.battery_percent, "last_connected_ts": self.last_connected_ts,
            "disconnects": self.disconnects, "last_error": self.last_error, "since_ts": self.since_ts,
        }


class ButtonSupervisor:
    def __init__(self, cfg: ButtonConfig, bt: BluetoothConfig, on_edge: EdgeCallback,
                 on_change: Callable[[], None] = lambda: None,
                 client_backend: type | None = None, scanner_backend: type | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.bt = bt
        self.on_edge = on_edge
        self.on_change = on_change
        self.client_backend = client_backend
        self.scanner_backend = scanner_backend
        self.clock = clock
        self.state = ButtonState(cfg.name, cfg.address, cfg.kind)
        self.connections = 0

    def _scanner_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.scanner_backend is not None:
            kw["backend"] = self.scanner_backend
        if self.bt.adapter:
            kw["bluez"] = {"adapter": self.bt.adapter}
        return kw

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if await self._connection():
                    failures = 0
            except asyncio.CancelledError:
                raise
            except (BleakError, OSError, asyncio.TimeoutError, EOFError) as exc:
                self.state.last_error = type(exc).__name__
                log.warning("button %s: %s", self.cfg.name, exc)
            failures += 1
            delay = min(self.bt.backoff_max_s, 0.5 * 2 ** min(failures, 10))
            await asyncio.sleep(delay / 2 + random.random() * delay / 2)

    async def _connection(self) -> bool:
        """Scans, connects, listens until the link drops. True when it did connect."""
        device = await BleakScanner.find_device_by_address(
            self.cfg.address, timeout=self.bt.scan_timeout_s, **self._scanner_kwargs())
        if device is None:
            self.state.last_error = "not found by scan"
            log.info("button %s not found by scan", self.cfg.name)
            return False
        loop = asyncio.get_running_loop()
        dropped = asyncio.Event()
        kw: dict[str, Any] = {"timeout": self.bt.scan_timeout_s}
        if self.client_backend is not None:
            kw["backend"] = self.client_backend
        if self.bt.adapter:
            kw["bluez"] = {"adapter": self.bt.adapter}
        client = BleakClient(device, lambda _c: loop.call_soon_threadsafe(dropped.set), **kw)
        try:
            await client.connect()
            self.connections += 1
            await self._setup(client)
            self.state.connected = True
            self.state.last_connected_ts = self.state.since_ts = time.time()
            self.state.last_error = ""
            log.info("button %s connected", self.cfg.name)
            self.on_change()
            while not await wait_event(dropped, self.bt.battery_interval_s):
                await self._read_battery(client)
            return True
        finally:
            was = self.state.connected
            self.state.connected = False
            if was:
                self.state.since_ts = time.time()
                if dropped.is_set():  # the link was lost (not the station stopping)
                    self.state.disconnects += 1
                    log.warning("button %s disconnected", self.cfg.name)
                self.on_change()
            try:
                await client.disconnect()
            except (BleakError, OSError, asyncio.TimeoutError):
                pass

    async def _setup(self, client: BleakClient) -> None:
        services = client.services
        if self.cfg.kind == "itag":
            link_loss = services.get_service(LINK_LOSS_SERVICE)
            level = link_loss.get_characteristic(ALERT_LEVEL_CHAR) if link_loss else None
            if level is not None:
                await client.write_gatt_char(level, b"\x00", response=True)
            else:
                log.info("button %s has no Link Loss service", self.cfg.name)
        service_uuid, char_uuid = BUTTON_SERVICE[self.cfg.kind]
        service = services.get_service(service_uuid)
        char = service.get_characteristic(char_uuid) if service else None
        if char is None:
            raise BleakError(f"button {self.cfg.name} has no {self.cfg.kind} button characteristic")
        kind = self.cfg.kind

        def notified(_char: Any, data: bytearray) -> None:
            t = self.clock()
            edge = edge_from_notification(kind, data)
            if edge is not None:
                self.state.last_edge_ts = t
                self.on_edge(self.cfg.name, edge, t)

        await client.start_notify(char, notified)
        await self._read_battery(client, subscribe=True)

    async def _read_battery(self, client: BleakClient, subscribe: bool = False) -> None:
        service = client.services.get_service(BATTERY_SERVICE)
        char = service.get_characteristic(BATTERY_LEVEL_CHAR) if service else None
        if char is None:
            return
        try:
            value = await client.read_gatt_char(char)
        except BleakError:
            return
        self._battery(value)
        if subscribe and "notify" in char.properties:
            await client.start_notify(char, lambda _c, data: self._battery(data))

    def _battery(self, value: bytes | bytearray) -> None:
        if value and 0 <= value[0] <= 100 and value[0] != self.state.battery_percent:
            self.state.battery_percent = value[0]
            self.on_change()


@dataclass(frozen=True)
class FoundButton:
    address: str
    name: str
    kind: str
    rssi: int
    device: Any = field(default=None, compare=False, repr=False)  # bleak's BLEDevice from the scan


async def scan_for_buttons(seconds: float, scanner_backend: type | None = None,
                           adapter: str = "") -> list[FoundButton]:
    """Buttons of a known kind advertising nearby, strongest first (for ``pair``)."""
    kw: dict[str, Any] = {"return_adv": True}
    if scanner_backend is not None:
        kw["backend"] = scanner_backend
    if adapter:
        kw["bluez"] = {"adapter": adapter}
    seen = await BleakScanner.discover(seconds, **kw)
    found = []
    for device, adv in seen.values():
        kind = guess_kind(adv.service_uuids, adv.local_name or device.name)
        if kind is not None:
            found.append(FoundButton(device.address, adv.local_name or device.name or "", kind, adv.rssi, device))
    return sorted(found, key=lambda b: -b.rssi)


async def choose_by_press(found: list[FoundButton], seconds: float, client_backend: type | None = None,
                          adapter: str = "", on_listening: Callable[[list[FoundButton]], None] | None = None,
                          ) -> tuple[FoundButton | None, list[str]]:
    """Connects to every button found and listens to them all for ``seconds``: the first one
    whose button is pressed is the one chosen (no address to copy by hand). Returns it (or
    None) and the buttons that could not be listened to (connection failed)."""
    loop = asyncio.get_running_loop()
    pressed: asyncio.Future[FoundButton] = loop.create_future()
    clients: list[BleakClient] = []
    unreachable: list[str] = []

    async def listen(button: FoundButton) -> None:
        kw: dict[str, Any] = {"timeout": max(1.0, min(seconds, 10.0))}
        if client_backend is not None:
            kw["backend"] = client_backend
        if adapter:
            kw["bluez"] = {"adapter": adapter}
        client = BleakClient(button.device or button.address, **kw)  # the scanned device: no second lookup
        try:
            await client.connect()
            clients.append(client)
            service_uuid, char_uuid = BUTTON_SERVICE[button.kind]
            service = client.services.get_service(service_uuid)
            char = service.get_characteristic(char_uuid) if service else None
            if char is None:
                raise BleakError("no button characteristic")

            def notified(_char: Any, data: bytearray) -> None:
                if edge_from_notification(button.kind, data) is Edge.PRESS and not pressed.done():
                    pressed.set_result(button)

            await client.start_notify(char, notified)
        except (BleakError, OSError, asyncio.TimeoutError) as exc:
            log.info("button %s: cannot listen to it (%s)", button.address, type(exc).__name__)
            unreachable.append(button.address)

    try:
        await asyncio.gather(*(listen(b) for b in found))
        if on_listening is not None:
            on_listening([b for b in found if b.address not in unreachable])
        if len(unreachable) == len(found):
            return None, unreachable
        try:
            return await asyncio.wait_for(asyncio.shield(pressed), seconds), unreachable
        except asyncio.TimeoutError:
            return None, unreachable
    finally:
        for client in clients:
            try:
                await client.disconnect()
            except (BleakError, OSError, asyncio.TimeoutError):
                pass


async def bond(address: str, client_backend: type | None = None, adapter: str = "",
               timeout_s: float = 20.0) -> str:
    """Bonds (pairs at the Bluetooth level) with the button where it supports it, so the link
    is encrypted and the button reconnects to this station only. Returns "bonded", or
    "not supported" (many iTags and the LED-Button have no security), or the error."""
    kw: dict[str, Any] = {"timeout": timeout_s}
    if client_backend is not None:
        kw["backend"] = client_backend
    if adapter:
        kw["bluez"] = {"adapter": adapter}
    client = BleakClient(address, **kw)
    try:
        await client.connect()
        try:
            await client.pair()
        except NotImplementedError:
            return "not supported"
        return "bonded"
    except (BleakError, OSError, asyncio.TimeoutError) as exc:
        text = str(exc) or type(exc).__name__
        if "not supported" in text.lower() or "authentication" in text.lower():
            return "not supported"
        return f"failed: {text}"
    finally:
        try:
            await client.disconnect()
        except (BleakError, OSError, asyncio.TimeoutError):
            pass

"""A fake bleak backend: peripherals that live in memory, plugged in through bleak's backend seam.

``make_backends(world)`` returns the scanner and client classes to hand to
``BleakScanner(backend=...)`` / ``BleakClient(backend=...)``; everything above
them (address lookup, characteristic resolution, notification plumbing) is
bleak's own code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str

from balise_station import buttons as b

LAYOUTS = {
    "led-button": [(b.LED_BUTTON_SERVICE, [(b.LED_BUTTON_CHAR, ["read", "notify"])])],
    "itag": [
        (b.ITAG_SERVICE, [(b.ITAG_CHAR, ["notify"])]),
        ("00001802-0000-1000-8000-00805f9b34fb", [(b.ALERT_LEVEL_CHAR, ["write-without-response"])]),
        (b.LINK_LOSS_SERVICE, [(b.ALERT_LEVEL_CHAR, ["read", "write"])]),
    ],
}


@dataclass
class FakePeripheral:
    address: str
    kind: str = "led-button"
    name: str = "Nordic_Blinky"
    battery: int | None = 87
    in_range: bool = True
    writes: list[tuple[str, str, bytes]] = field(default_factory=list)
    client: FakeClientBase | None = None
    link_loss_level: int = 2  # iTags ship with "high alert": beep when the link drops
    rssi: int = -55
    bondable: bool = True
    bonded: bool = False

    def services(self) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        handle = 1
        layout = list(LAYOUTS[self.kind])
        if self.battery is not None:
            layout.append((b.BATTERY_SERVICE, [(b.BATTERY_LEVEL_CHAR, ["read", "notify"])]))
        for svc_uuid, chars in layout:
            svc = BleakGATTService(None, handle, normalize_uuid_str(svc_uuid))
            coll.add_service(svc)
            handle += 1
            for char_uuid, props in chars:
                ch = BleakGATTCharacteristic(None, handle, normalize_uuid_str(char_uuid), props, lambda: 20, svc)
                coll.add_characteristic(ch)
                handle += 2
        return coll

    def advertisement(self) -> AdvertisementData:
        svc = LAYOUTS[self.kind][0][0]
        return AdvertisementData(self.name, {}, {}, [svc], None, self.rssi, ())

    # what a person or the radio does
    def notify(self, data: bytes) -> None:
        assert self.client is not None, "not connected"
        self.client.deliver(b.ITAG_CHAR if self.kind == "itag" else b.LED_BUTTON_CHAR, bytearray(data))

    def press(self) -> None:
        self.notify(b"\x01")

    def release(self) -> None:
        self.notify(b"\x00")

    def drop_link(self, out_of_range: bool = True) -> None:
        self.in_range = not out_of_range
        if self.client is not None:
            self.client.lost()


class FakeClientBase(BaseBleakClient):
    world: dict[str, FakePeripheral]
    created: list[FakeClientBase]

    def __init__(self, address_or_ble_device: Any, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
                         timeout=kwargs.get("timeout", 10))
        self._connected = False
        self._notify: dict[int, Any] = {}
        self.created.append(self)

    @property
    def peripheral(self) -> FakePeripheral:
        return self.world[self.address]

    @property
    def mtu_size(self) -> int:
        return 23

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        p = self.world.get(self.address)
        if p is None or not p.in_range:
            raise BleakError("device not reachable")
        if p.client is not None:
            raise BleakError("already connected to another client")
        self.services = p.services()
        self._connected = True
        p.client = self

    async def disconnect(self) -> None:
        if self._connected:
            self._connected = False
            self.peripheral.client = None

    def lost(self) -> None:
        self._connected = False
        self.peripheral.client = None
        if self._disconnected_callback:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        if not self.peripheral.bondable:
            raise NotImplementedError("this button has no security")
        self.peripheral.bonded = True

    async def unpair(self) -> None:
        pass

    @property
    def is_connected(self) -> bool:
        return self._connected

    def _check(self) -> None:
        if not self._connected:
            raise BleakError("not connected")

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        self._check()
        if characteristic.uuid == b.BATTERY_LEVEL_CHAR:
            return bytearray([self.peripheral.battery or 0])
        if characteristic.uuid == b.ALERT_LEVEL_CHAR:
            return bytearray([self.peripheral.link_loss_level])
        return bytearray(b"\x00")

    async def read_gatt_descriptor(self, descriptor: Any, **kwargs: Any) -> bytearray:
        raise BleakError("no descriptors here")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        self._check()
        p = self.peripheral
        p.writes.append((characteristic.service_uuid, characteristic.uuid, bytes(data)))
        if characteristic.service_uuid == b.LINK_LOSS_SERVICE and characteristic.uuid == b.ALERT_LEVEL_CHAR:
            p.link_loss_level = bytes(data)[0]

    async def write_gatt_descriptor(self, descriptor: Any, data: Any) -> None:
        raise BleakError("no descriptors here")

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: Any, **kwargs: Any) -> None:
        self._check()
        self._notify[characteristic.uuid] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._notify.pop(characteristic.uuid, None)

    def deliver(self, char_uuid: str, data: bytearray) -> None:
        cb = self._notify.get(char_uuid)
        if cb is not None:
            cb(data)


class FakeScannerBase(BaseBleakScanner):
    world: dict[str, FakePeripheral]
    scans: list[float]

    def __init__(self, detection_callback: Any = None, service_uuids: Any = None, scanning_mode: str = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self.scans.append(asyncio.get_running_loop().time())
        self._task = asyncio.create_task(self._advertise())

    async def _advertise(self) -> None:
        while True:
            for p in list(self.world.values()):
                if p.in_range and p.client is None:
                    adv = p.advertisement()
                    if self.is_allowed_uuid(adv.service_uuids):
                        dev = self.create_or_update_device(p.address, p.address, p.name, None, adv)
                        self.call_detection_callbacks(dev, adv)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def make_backends(world: dict[str, FakePeripheral]) -> tuple[type, type, list, list]:
    created: list = []
    scans: list = []
    scanner = type("FakeScanner", (FakeScannerBase,), {"world": world, "scans": scans})
    client = type("FakeClient", (FakeClientBase,), {"world": world, "created": created})
    return scanner, client, created, scans

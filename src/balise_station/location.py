"""Location: fixes from a fixed place, from gpsd, or from a simulated track.

Every source pushes its fixes into a ``LocationHub``; an alert takes the best
fix the hub holds when it is raised, then follows the hub for new fixes while
it is open. Positions are logged at debug level at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from balise_station.config import FixedPlace, GpsdConfig, SimulatedTrackConfig

log = logging.getLogger(__name__)

WALKING_DRIFT_M_PER_S = 1.5  # how fast an old fix loses value: a person walks about this fast


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    accuracy_m: float
    recorded_at: datetime
    source: str  # gps | fixed | network | simulated (device API vocabulary)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_api(self) -> dict[str, object]:
        return {
            "id": self.id,
            "lat": round(self.lat, 7),
            "lon": round(self.lon, 7),
            "accuracy_m": round(self.accuracy_m, 1),
            "recorded_at": _iso(self.recorded_at),
            "source": self.source,
        }

    @classmethod
    def from_api(cls, d: dict[str, object]) -> Fix:
        return cls(
            lat=float(d["lat"]), lon=float(d["lon"]), accuracy_m=float(d["accuracy_m"]),  # type: ignore[arg-type]
            recorded_at=datetime.fromisoformat(str(d["recorded_at"]).replace("Z", "+00:00")),
            source=str(d["source"]), id=str(d["id"]),
        )


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def effective_error_m(fix: Fix, now: datetime) -> float:
    """The error of a fix once its age is counted: an old precise fix can lose to a fresh rough one."""
    age = max(0.0, (now - fix.recorded_at).total_seconds())
    return fix.accuracy_m + age * WALKING_DRIFT_M_PER_S


def best_fix(fixes: list[Fix], now: datetime, max_age_s: float) -> Fix | None:
    """The fix with the smallest effective error among those younger than ``max_age_s``."""
    fresh = [f for f in fixes if (now - f.recorded_at).total_seconds() <= max_age_s]
    if not fresh:
        return None
    return min(fresh, key=lambda f: effective_error_m(f, now))


class LocationHub:
    """Holds the latest fix of every source and tells listeners about new ones."""

    def __init__(self, max_age_s: float = 120.0, wall: Callable[[], datetime] | None = None,
                 fixed: FixedPlace | None = None) -> None:
        self.max_age_s = max_age_s
        self._wall = wall or (lambda: datetime.now(timezone.utc))
        self._fixed = fixed
        self._latest: dict[str, Fix] = {}
        self._listeners: list[Callable[[Fix], None]] = []

    def push(self, fix: Fix) -> None:
        self._latest[fix.source] = fix
        log.debug("fix from %s: %.5f,%.5f ±%.0f m", fix.source, fix.lat, fix.lon, fix.accuracy_m)
        for listener in list(self._listeners):
            listener(fix)

    def best(self) -> Fix | None:
        """The best fix now, as a new fix (own id) ready to go with an alert."""
        now = self._wall()
        candidates = list(self._latest.values())
        if self._fixed is not None:
            candidates.append(self.fixed_fix(now))
        chosen = best_fix(candidates, now, self.max_age_s)
        return replace(chosen, id=str(uuid.uuid4())) if chosen else None

    def fixed_fix(self, now: datetime) -> Fix:
        assert self._fixed is not None
        return Fix(self._fixed.lat, self._fixed.lon, self._fixed.accuracy_m, now, "fixed")

    def subscribe(self, listener: Callable[[Fix], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def sources_seen(self) -> list[str]:
        return sorted(self._latest)


# -- gpsd -------------------------------------------------------------------
WATCH = b'?WATCH={"enable":true,"json":true};\n'


def fix_from_tpv(msg: dict[str, object]) -> Fix | None:
    """A fix from a gpsd TPV report, or None when it carries no 2D/3D position."""
    if msg.get("class") != "TPV" or not isinstance(msg.get("mode"), int) or int(msg["mode"]) < 2:  # type: ignore[call-overload]
        return None
    lat, lon = msg.get("lat"), msg.get("lon")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    acc: float = 50.0
    eph = msg.get("eph")
    epx, epy = msg.get("epx"), msg.get("epy")
    if isinstance(eph, (int, float)):
        acc = float(eph)
    elif isinstance(epx, (int, float)) and isinstance(epy, (int, float)):
        acc = math.hypot(float(epx), float(epy))
    when = datetime.now(timezone.utc)
    t = msg.get("time")
    if isinstance(t, str):
        try:
            when = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            pass
    return Fix(float(lat), float(lon), acc, when, "gps")


class GpsdSource:
    """Follows gpsd over its JSON protocol on TCP, reconnecting with backoff."""

    def __init__(self, cfg: GpsdConfig, hub: LocationHub, backoff_max_s: float = 30.0) -> None:
        self.cfg = cfg
        self.hub = hub
        self.backoff_max_s = backoff_max_s
        self.connected = False

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                log.info("gpsd at %s:%d unavailable (%s)", self.cfg.host, self.cfg.port, type(exc).__name__)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(self.backoff_max_s, delay * 2)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.cfg.host, self.cfg.port)
        try:
            writer.write(WATCH)
            await writer.drain()
            self.connected = True
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(msg, dict) and (fix := fix_from_tpv(msg)) is not None:
                    self.hub.push(fix)
        finally:
            writer.close()


# -- simulated track --------------------------------------------------------
def track_position(cfg: SimulatedTrackConfig, elapsed_s: float) -> tuple[float, float]:
    """A point walking round a circle of ``radius_m`` around the configured centre."""
    angle = 2 * math.pi * (elapsed_s % cfg.period_s) / cfg.period_s
    dlat = cfg.radius_m * math.sin(angle) / 111_320.0
    dlon = cfg.radius_m * math.cos(angle) / (111_320.0 * max(0.01, math.cos(math.radians(cfg.lat))))
    return cfg.lat + dlat, cfg.lon + dlon


class SimulatedTrack:
    """The GPS's simulated twin: a fix every ``interval_s`` along a circle."""

    def __init__(self, cfg: SimulatedTrackConfig, hub: LocationHub) -> None:
        self.cfg = cfg
        self.hub = hub

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            lat, lon = track_position(self.cfg, loop.time() - start)
            self.hub.push(Fix(lat, lon, self.cfg.accuracy_m, datetime.now(timezone.utc), "simulated"))
            await asyncio.sleep(self.cfg.interval_s)


def age_s(fix: Fix, now: datetime) -> float:
    return (now - fix.recorded_at) / timedelta(seconds=1)

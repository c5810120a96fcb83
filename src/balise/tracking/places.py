"""Nearest place name for a position, offline.

Balise must not send a person's position to a third-party geocoder, and often cannot
reach one. The `reverse_geocode` package ships the GeoNames "cities1000" gazetteer
(every locality of 1,000 inhabitants or more, with its department) and finds the
nearest one with a k-d tree, on this machine. It answers "near Lyon 2e (Rhône), 1 km":
a locality, not a street address.

Loading the gazetteer takes about two seconds, so it is loaded once per process, in the
background: messages never wait for it (the first SMS after a restart may go without a
place name; it always has the coordinates and the link); the contact page waits a little.
BALISE_PLACE_NAMES=off turns the lookup off.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded = threading.Event()
_loader: threading.Thread | None = None
_data = None
# A match farther than this is no help to someone looking for her.
MAX_DISTANCE_KM = 30.0


@dataclass(frozen=True)
class Place:
    name: str
    region: str
    country_code: str
    distance_km: float
    # Where the gazetteer puts the place (its centre): for "1.2 km north-east of".
    lat: float = 0.0
    lon: float = 0.0

    def label(self) -> str:
        return f"{self.name} ({self.region})" if self.region and self.region != self.name else self.name


def _load() -> None:
    global _data
    try:
        import reverse_geocode

        _data = reverse_geocode.GeocodeData()
    except Exception:  # a broken gazetteer must never break an alert
        log.exception("offline place names unavailable")
    finally:
        _loaded.set()


def preload() -> None:
    """Start loading the gazetteer in the background (idempotent)."""
    global _loader
    if not getattr(settings, "PLACE_NAMES", True):
        return
    with _lock:
        if _loader is None:
            _loader = threading.Thread(target=_load, name="balise-places", daemon=True)
            _loader.start()


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(a)))


def nearest(lat: float, lon: float, wait: float = 0.0) -> Place | None:
    """The nearest known locality, or None when unknown, too far, or not loaded within
    WAIT seconds."""
    if not getattr(settings, "PLACE_NAMES", True):
        return None
    preload()
    if not _loaded.wait(wait) or _data is None:
        return None
    try:
        match = _data.query([(lat, lon)])[0]
    except Exception:
        return None
    km = distance_km(lat, lon, match["latitude"], match["longitude"])
    if km > MAX_DISTANCE_KM:
        return None
    region = match.get("county") or match.get("state") or ""
    return Place(match["city"], region, match.get("country_code", ""), km, match["latitude"], match["longitude"])


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The initial bearing from (lat1, lon1) to (lat2, lon2), in degrees from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0

"""``impossible_travel``: one account scanning in two places no one could travel between.

Each user's last geolocated scan is kept; a new geolocated scan is compared with it by
great-circle (haversine) distance and the implied speed. A cheap upper bound on the
distance rejects the usual same-city case before any trigonometry.

The last scans are rows of a :class:`~detectors.compact.CompactTable` keyed by a 64-bit
hash of the user id: time, latitude and longitude as ``int64``/``float64`` (exact), the
scan's region, channel and city as one small interned id, its code as bytes, about 50
bytes a user instead of a tuple of Python objects several times that.
"""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt
from typing import Any

import numpy as np

from detectors import texts
from detectors.compact import STR, CompactTable, Interner, key_of
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Scan

KIND = "impossible_travel"
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = EARTH_RADIUS_KM * 3.141592653589793 / 180.0
_NEVER = -(1 << 62)
_LATEST = 1 << 62  # "no user yet" for the oldest-bucket bound
_BUCKET_MS = 10 * 60_000
_PLACES_KEPT = 4096  # distinct (region, channel, city) ids kept before unused ones go

# a user's last geolocated scan: columns of the table
_T, _LAT, _LON, _PLACE, _CODE = range(5)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two WGS-84 points (spherical Earth)."""
    p1, p2 = radians(lat1), radians(lat2)
    h = sin((p2 - p1) / 2) ** 2 + cos(p1) * cos(p2) * sin(radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))


class ImpossibleTravelDetector:
    """Two geolocated scans of one user farther apart than any travel allows.

    Parameters (event time in epoch milliseconds):

    - ``max_kmh`` (900): implied speed above which the trip is impossible (an airliner's
      cruising speed; door to door real trips are far slower).
    - ``min_km`` (300): distances at or below this never fire, whatever the time gap:
      GPS and IP geolocation errors, and scans seconds apart across a city.
    - ``window_ms`` (24 h): how long a user's last position is remembered; at
      ``max_kmh`` no two points on Earth are farther apart than a day's travel.
    - ``max_users`` (500,000): hard cap, least recently active forgotten first. It
      bounds how far back positions reach (24 h × 500k / distinct geolocated users a
      day), and only trips with a gap under distance / ``max_kmh`` are impossible: at 1M
      users a day (12 h kept) every impossible trip up to 10,800 km is still caught.
    - ``emit_interval_ms`` (60 s): at most one observation per user per interval.

    Users are found by a 64-bit hash of their id (see :mod:`detectors.compact`): two
    users sharing one (about 1 in 10 million with 2 million held) would be compared
    with each other's last position.

    Scans without both ``lat`` and ``lon`` are ignored. Observations: entity ``user``,
    ``region`` and ``channel`` empty (the incident spans two places, both named in
    ``details``), ``value`` the implied speed in km/h, ``baseline`` ``max_kmh``.

    >>> from koxpulse.events import Scan
    >>> det = ImpossibleTravelDetector()
    >>> def scan(k, region, city, lat, lon):
    ...     return Scan(event_id=str(k), ts=0, region=region, channel="ecommerce",
    ...                 code_id=f"B1-{k}", user_id="U7", city=city, lat=lat, lon=lon)
    >>> det.update(scan(1, "CN-BJ", "北京", 39.9042, 116.4074), 0)
    []
    >>> det.update(scan(2, "CN-TJ", "天津", 39.3434, 117.3616), 3_600_000)  # 1 h, ~110 km
    []
    >>> [obs] = det.update(scan(3, "CN-GD", "广州", 23.1291, 113.2644), 3_600_000 + 15 * 60_000)
    >>> obs.entity_id, round(obs.details["distance_km"]), obs.severity
    ('U7', 1844, 'critical')
    >>> print(obs.summary)  # doctest: +NORMALIZE_WHITESPACE
    User U7 scanned in 天津 (CN-TJ) and 15 minutes later in 广州 (CN-GD), 1,844 km apart
    (about 7,376 km/h) — no one travels that fast; the account is likely shared or its
    location spoofed.
    """

    kind = KIND

    def __init__(
        self,
        *,
        max_kmh: float = 900.0,
        min_km: float = 300.0,
        window_ms: int = 24 * texts.HOUR_MS,
        max_users: int = 500_000,
        emit_interval_ms: int = 60_000,
        lang: str = "en",
    ) -> None:
        if max_kmh <= 0 or min_km < 0 or window_ms <= 0 or max_users < 1:
            raise ValueError("max_kmh, window_ms and max_users must be positive, min_km >= 0")
        self.max_kmh = max_kmh
        self.min_km = min_km
        self.window_ms = window_ms
        self.max_users = max_users
        self.emit_interval_ms = emit_interval_ms
        self.lang = texts.check_lang(lang)
        self._min_deg = min_km / KM_PER_DEGREE
        self._users = CompactTable(
            (("t", "i8"), ("lat", "f8"), ("lon", "f8"), ("place", "u4"), ("code", STR)),
            max_rows=max_users + 1,
        )
        """user -> last geolocated scan (t, lat, lon, place, code)."""
        self._places = Interner()
        """(region, channel, city) of scans, by id."""
        self._emitted: dict[int, int] = {}
        """user key -> time of its last observation (few users ever have one)."""
        self._oldest = _LATEST  # no user's last scan is in an older bucket
        self._places_kept = _PLACES_KEPT

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); geolocated scans matter."""
        out: list[Observation] = []
        if ev.__class__ is Scan:
            self.on_scan(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_scan(self, ev: Scan, t: int, out: list[Observation]) -> None:
        lat = ev.lat
        lon = ev.lon
        if lat is None or lon is None:
            return
        user = ev.user_id
        users = self._users
        r = users.upsert(user)
        views = users.views
        if r >= 0:
            last_t: int = views[_T][r]
            # cheap bound: great-circle distance <= (|dlat| + |dlon|) degrees of arc
            dlon = abs(lon - views[_LON][r])
            if dlon > 180.0:
                dlon = 360.0 - dlon
            if abs(lat - views[_LAT][r]) + dlon > self._min_deg:
                self._judge(r, user, ev, t, out)
            if t < last_t:
                return  # out of order: the later position stays
        else:
            r = ~r
        views[_T][r] = t
        views[_LAT][r] = lat
        views[_LON][r] = lon
        place = (ev.region, ev.channel, ev.city)
        pid = self._places.ids.get(place)
        views[_PLACE][r] = self._places.add(place) if pid is None else pid
        users.strs[_CODE].set(r, ev.code_id)
        b = t // _BUCKET_MS
        if b < self._oldest:
            self._oldest = b
        if users.size > self.max_users:  # only after an insert
            self._evict()

    def _judge(self, r: int, user: str, ev: Scan, t: int, out: list[Observation]) -> None:
        """Emit if the trip from the user's last scan (row ``r``) to ``ev`` is impossible."""
        views = self._users.views
        last_t: int = views[_T][r]
        gap = abs(t - last_t)
        if gap >= self.window_ms:
            return
        last_lat: float = views[_LAT][r]
        last_lon: float = views[_LON][r]
        km = haversine_km(last_lat, last_lon, ev.lat, ev.lon)  # type: ignore[arg-type]
        if km <= self.min_km or km * 3_600_000 <= self.max_kmh * gap:
            return
        key = key_of(user)
        if t - self._emitted.get(key, _NEVER) < self.emit_interval_ms:
            return
        kmh = km * 3_600_000 / max(gap, 1000)  # same second: as if a second apart
        region, channel, city = self._places.values[views[_PLACE][r]]  # type: ignore[misc]
        earlier: dict[str, Any] = {
            "at": texts.iso(last_t),
            "region": region,
            "channel": channel,
            "city": city,
            "lat": last_lat,
            "lon": last_lon,
            "code_id": self._users.strs[_CODE].get(r),
        }
        later: dict[str, Any] = {
            "at": texts.iso(t),
            "region": ev.region,
            "channel": ev.channel,
            "city": ev.city,
            "lat": ev.lat,
            "lon": ev.lon,
            "code_id": ev.code_id,
        }
        if t < last_t:  # arrived out of order: report in time order
            earlier, later = later, earlier
        out.append(
            Observation(
                kind=KIND,
                entity_type="user",
                entity_id=user,
                t=t,
                severity=texts.severity(kmh, self.max_kmh),
                value=round(kmh, 1),
                baseline=self.max_kmh,
                summary=texts.impossible_travel(
                    self.lang,
                    user,
                    texts.place(earlier["city"], earlier["region"]),
                    texts.place(later["city"], later["region"]),
                    gap,
                    km,
                    kmh,
                ),
                details={
                    "user_id": user,
                    "distance_km": round(km, 1),
                    "gap_minutes": round(gap / texts.MINUTE_MS, 1),
                    "speed_kmh": round(kmh, 1),
                    "max_kmh": self.max_kmh,
                    "min_km": self.min_km,
                    "from": earlier,
                    "to": later,
                },
            )
        )
        self._emitted[key] = t

    def expire(self, now: int) -> None:
        """Forget users whose last geolocated scan is older than ``window_ms``."""
        cutoff_b = (now - self.window_ms) // _BUCKET_MS
        if cutoff_b <= self._oldest:
            return
        users = self._users
        self._remove(users.live_mask() & (users.column(_T) < cutoff_b * _BUCKET_MS))
        if len(self._places) > self._places_kept:  # ids of places no longer held go
            rows = users.live()
            places = users.column(_PLACE)
            ids = places[rows]
            places[rows] = self._places.compact(ids)[ids]
            self._places_kept = max(_PLACES_KEPT, 2 * len(self._places))

    def _evict(self) -> None:
        """Over the cap: forget the users whose last scan is oldest (10 minutes' worth)."""
        users = self._users
        times = users.column(_T)
        while users.size > self.max_users:
            b = self._oldest
            self._remove(users.live_mask() & (times < (b + 1) * _BUCKET_MS))

    def _remove(self, which: np.ndarray) -> None:
        """Forget the users where ``which``; find the oldest bucket left."""
        users = self._users
        users.remove_where(which)
        oldest = users.min_live(_T)
        self._oldest = _LATEST if oldest is None else oldest // _BUCKET_MS
        if self._emitted:
            self._emitted = {k: e for k, e in self._emitted.items() if users.find(k) >= 0}

    def state_size(self) -> int:
        """Users remembered."""
        return len(self._users)

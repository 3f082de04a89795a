"""``impossible_travel``: one account scanning in two places no one could travel between.

Each user's last geolocated scan is kept; a new geolocated scan is compared with it by
great-circle (haversine) distance and the implied speed. A cheap upper bound on the
distance rejects the usual same-city case before any trigonometry.
"""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt
from typing import Any

from detectors import texts
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Scan

KIND = "impossible_travel"
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = EARTH_RADIUS_KM * 3.141592653589793 / 180.0
_NEVER = -(1 << 62)
_BUCKET_MS = 10 * 60_000

# a user's last geolocated scan
_T, _LAT, _LON, _REGION, _CHANNEL, _CITY, _CODE, _EMIT, _WB = range(9)


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
    - ``max_users`` (2,000,000): hard cap, least recently active forgotten first.
    - ``emit_interval_ms`` (60 s): at most one observation per user per interval.

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
        max_users: int = 2_000_000,
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
        self._users: dict[str, tuple[Any, ...]] = {}
        """user -> last geolocated scan (t, lat, lon, region, channel, city, code, emit, wb)."""
        self._wheel: dict[int, list[str]] = {}
        self._tail_b = _NEVER  # the newest wheel bucket and its list
        self._tail: list[str] = []

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
        b = t // _BUCKET_MS
        users = self._users
        rec = users.get(user)
        if rec is None:
            users[user] = (t, lat, lon, ev.region, ev.channel, ev.city, ev.code_id, _NEVER, b)
            if b == self._tail_b:
                self._tail.append(user)
            else:
                self._put(b, user)
            if len(users) > self.max_users:
                self._evict()
            return
        wb = rec[_WB]
        if b > wb:
            wb = b
            if b == self._tail_b:
                self._tail.append(user)
            else:
                self._put(b, user)
        emit = rec[_EMIT]
        # cheap bound: great-circle distance <= (|dlat| + |dlon|) degrees of arc
        dlon = abs(lon - rec[_LON])
        if dlon > 180.0:
            dlon = 360.0 - dlon
        if abs(lat - rec[_LAT]) + dlon > self._min_deg:
            emit = self._judge(rec, user, ev, t, out)
        if t >= rec[_T]:
            users[user] = (t, lat, lon, ev.region, ev.channel, ev.city, ev.code_id, emit, wb)
        elif wb != rec[_WB] or emit != rec[_EMIT]:  # out of order: keep the later position
            users[user] = (*rec[:_EMIT], emit, wb)

    def _put(self, b: int, user: str) -> None:
        wl = self._wheel.get(b)
        if wl is None:
            wl = self._wheel[b] = [user]
        else:
            wl.append(user)
        if b >= self._tail_b:  # the newest bucket's list, appended to directly
            self._tail_b, self._tail = b, wl

    def _judge(
        self, rec: tuple[Any, ...], user: str, ev: Scan, t: int, out: list[Observation]
    ) -> int:
        """Emit if the trip from ``rec`` to ``ev`` is impossible; returns the last emit time."""
        gap = abs(t - rec[_T])
        if gap >= self.window_ms:
            return rec[_EMIT]  # type: ignore[no-any-return]
        km = haversine_km(rec[_LAT], rec[_LON], ev.lat, ev.lon)  # type: ignore[arg-type]
        if km <= self.min_km or km * 3_600_000 <= self.max_kmh * gap:
            return rec[_EMIT]  # type: ignore[no-any-return]
        if t - rec[_EMIT] < self.emit_interval_ms:
            return rec[_EMIT]  # type: ignore[no-any-return]
        kmh = km * 3_600_000 / max(gap, 1000)  # same second: as if a second apart
        earlier: dict[str, Any] = {
            "at": texts.iso(rec[_T]),
            "region": rec[_REGION],
            "channel": rec[_CHANNEL],
            "city": rec[_CITY],
            "lat": rec[_LAT],
            "lon": rec[_LON],
            "code_id": rec[_CODE],
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
        if t < rec[_T]:  # arrived out of order: report in time order
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
        return t

    def expire(self, now: int) -> None:
        """Forget users whose last geolocated scan is older than ``window_ms``."""
        cutoff_b = (now - self.window_ms) // _BUCKET_MS
        users = self._users
        for b in [k for k in self._wheel if k < cutoff_b]:
            for user in self._wheel.pop(b):
                rec = users.get(user)
                if rec is not None and rec[_WB] <= b:
                    del users[user]
        if self._tail_b not in self._wheel:
            self._tail_b, self._tail = _NEVER, []

    def _evict(self) -> None:
        users = self._users
        while len(users) > self.max_users and self._wheel:
            b = min(self._wheel)
            for user in self._wheel.pop(b):
                rec = users.get(user)
                if rec is not None and rec[_WB] <= b:
                    del users[user]
        if self._tail_b not in self._wheel:
            self._tail_b, self._tail = _NEVER, []

    def state_size(self) -> int:
        """Users remembered."""
        return len(self._users)

"""``outlet_self_redemption``: a store cashing out rewards itself.

Two signatures, judged on redemptions that name an ``outlet_id``:

- **rate**: the outlet redeems far above its own usual level. Redemptions are counted
  per outlet in 10-minute buckets; the usual level is a bias-corrected EWMA of the
  bucket counts per hour of the day (24 slots, so a lunchtime rush is compared with
  lunchtimes), robust to the anomalies themselves because a bucket's count is clipped
  to a few times the usual level before it is learnt. The comparison takes the busiest
  of the neighbouring hours and a floor, so a shifted rush or a quiet store does not
  look anomalous, and it is scaled by how far the outlet's peers (the other outlets of
  its region x channel) are above their own usual level right now, so a region-wide
  promotion does not make every store look like a fraudster. Armed once the outlet has
  ``warmup_ms`` (24 h) of history.
- **device burst**: many redemptions at one outlet from one device within a short time
  (the till or a clerk's phone redeeming collected codes). Fires from the first event.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from math import sqrt
from typing import Any

from detectors import texts
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Redemption

KIND = "outlet_self_redemption"
_NEVER = -(1 << 62)


class _Level:
    """Redemptions per bucket and their usual level per hour-of-day slot: of one outlet,
    or of all outlets of one region x channel (its peers)."""

    __slots__ = ("bucket", "count", "first_t", "prev", "prof", "wts")

    def __init__(self, t: int, bucket: int, slots: int) -> None:
        self.first_t = t
        self.bucket = bucket
        self.count = 0
        self.prev = 0
        """count of the bucket before ``bucket`` (0 if there was a gap)"""
        self.prof = array("d", bytes(8 * slots))
        """EWMA of redemptions per bucket, per hour-of-day slot (not bias-corrected)."""
        self.wts = array("d", bytes(8 * slots))
        """Weight of the EWMA per slot: 1 - (1 - alpha)^n after n buckets."""


class _Outlet(_Level):
    """Everything known about one outlet (long-lived, one per outlet)."""

    __slots__ = ("busr", "channel", "day", "devs", "emit", "group", "region")

    def __init__(
        self, region: str, channel: str, t: int, bucket: int, slots: int, group: _Level | None
    ) -> None:
        super().__init__(t, bucket, slots)
        self.region = region
        self.channel = channel
        self.group = group
        self.busr: dict[str, int] = {}
        """redemptions per user in the current bucket"""
        self.devs: dict[str, int | list[int]] = {}
        """device -> time of its one redemption, or times of its redemptions, within the
        burst window (pruned when the outlet's bucket rolls)"""
        self.emit = _NEVER
        self.day = -1


class OutletSelfRedemptionDetector:
    """An outlet redeeming far above its usual level, or in bursts from one device.

    Parameters (event time in epoch milliseconds):

    - ``bucket_ms`` (10 min): counting bucket of the rate rule.
    - ``ratio`` (5.0) and ``min_count`` (15): the rate rule fires when a bucket's
      redemptions reach both ``ratio`` x the usual level and ``min_count``.
    - ``floor`` (2.0): the usual level is never taken below this many per bucket.
    - ``warmup_ms`` (24 h): history an outlet needs before the rate rule is armed
      (the contract allows at most 48 h).
    - ``alpha`` (0.05): EWMA weight of each new bucket in its hour-of-day slot (six
      buckets a day per slot, so about three days of memory).
    - ``clip`` (3.0): a bucket is learnt as at most ``clip`` x the usual level.
    - ``slots`` (24): hour-of-day slots of the usual level.
    - ``burst_min`` (10) redemptions from one device at one outlet within
      ``burst_window_ms`` (30 min): the device-burst rule.
    - ``outlet_ttl_ms`` (7 days): an outlet idle this long is forgotten (and re-warms).
    - ``max_outlets`` (200,000), ``max_burst`` (1,000 times per device),
      ``max_groups`` (10,000 region x channel peer groups): hard caps.
    - ``emit_interval_ms`` (60 s): at most one observation per outlet per interval.

    Observations: entity ``outlet``; the rate rule gives ``value`` = redemptions in the
    bucket and ``baseline`` = the usual level (times ``peer_factor`` when the outlet's
    region x channel is itself busier than usual); a burst alone gives the device's
    redemptions and the burst threshold. ``details``: ``rule`` (``rate``,
    ``device_burst`` or both), the bucket count, usual level and threshold (or
    ``armed: false``), the burst device and count, the top 10 ``devices`` by
    redemptions within the burst window and the top 10 ``users`` of the bucket.

    >>> from koxpulse.events import Redemption
    >>> det = OutletSelfRedemptionDetector()
    >>> def redeem(k, device):
    ...     return Redemption(event_id=str(k), ts=0, region="CN-SD", channel="offline",
    ...                       code_id=f"B00001-{k:06d}", user_id=f"U{k % 3}",
    ...                       outlet_id="SD-OFF-0002", device_id=device)
    >>> [o for k in range(9) for o in det.update(redeem(k, "till"), k * 120_000)]
    []
    >>> [obs] = det.update(redeem(9, "till"), 9 * 120_000)
    >>> obs.entity_id, obs.details["rule"], obs.details["burst_redemptions"]
    ('SD-OFF-0002', 'device_burst', 10)
    >>> print(obs.summary)  # doctest: +NORMALIZE_WHITESPACE
    Outlet SD-OFF-0002 redeemed 10 rewards from one device (till) in 18 minutes (CN-SD) —
    the store may be cashing out rewards itself.
    """

    kind = KIND

    def __init__(
        self,
        *,
        bucket_ms: int = 10 * texts.MINUTE_MS,
        ratio: float = 5.0,
        min_count: int = 15,
        floor: float = 2.0,
        warmup_ms: int = 24 * texts.HOUR_MS,
        alpha: float = 0.05,
        clip: float = 3.0,
        slots: int = 24,
        burst_min: int = 10,
        burst_window_ms: int = 30 * texts.MINUTE_MS,
        outlet_ttl_ms: int = 7 * texts.DAY_MS,
        max_outlets: int = 200_000,
        max_burst: int = 1_000,
        max_groups: int = 10_000,
        emit_interval_ms: int = 60_000,
        lang: str = "en",
    ) -> None:
        if bucket_ms <= 0 or texts.DAY_MS % bucket_ms:
            raise ValueError("bucket_ms must divide a day")
        per_day = texts.DAY_MS // bucket_ms
        if slots < 1 or per_day % slots:
            raise ValueError("slots must divide the buckets of a day")
        if not (0 < alpha < 1) or ratio <= 1 or clip < 1 or floor <= 0:
            raise ValueError("need 0 < alpha < 1, ratio > 1, clip >= 1, floor > 0")
        if min_count < 1 or burst_min < 2 or max_burst < burst_min:
            raise ValueError("need min_count >= 1, 2 <= burst_min <= max_burst")
        self.bucket_ms = bucket_ms
        self.ratio = ratio
        self.min_count = min_count
        self.floor = floor
        self.warmup_ms = warmup_ms
        self.alpha = alpha
        self.clip = clip
        self.slots = slots
        self.burst_min = burst_min
        self.burst_window_ms = burst_window_ms
        self.outlet_ttl_ms = outlet_ttl_ms
        self.max_outlets = max_outlets
        self.max_burst = max_burst
        self.max_groups = max_groups
        self.emit_interval_ms = emit_interval_ms
        self.lang = texts.check_lang(lang)
        self._per_day = per_day
        self._per_slot = per_day // slots
        self._qpow = [(1 - alpha) ** k for k in range(self._per_slot + 1)]
        self._outlets: dict[str, _Outlet] = {}
        self._groups: dict[tuple[str, str], _Level] = {}
        """(region, channel) -> all its outlets together: the peers of each outlet."""
        self._day_wheel: dict[int, list[str]] = {}
        """day -> outlets active that day (forgetting idle outlets)."""
        self._bucket_wheel: dict[int, list[str]] = {}
        """bucket -> outlets active in it (dropping burst state of idle outlets)."""

    # -- event path ------------------------------------------------------------------

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); redemptions at an outlet matter."""
        out: list[Observation] = []
        if ev.__class__ is Redemption:
            self.on_redemption(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_redemption(self, ev: Redemption, t: int, out: list[Observation]) -> None:
        oid = ev.outlet_id
        if oid is None:
            return
        b = t // self.bucket_ms
        rec = self._outlets.get(oid)
        if rec is None:
            rec = _Outlet(ev.region, ev.channel, t, b, self.slots, self._group(ev, t, b))
            self._outlets[oid] = rec
            self._wheel(self._bucket_wheel, b, oid)
            if len(self._outlets) > self.max_outlets:
                self._evict()
        elif b > rec.bucket:
            self._roll(rec, b, t)
            self._wheel(self._bucket_wheel, b, oid)
        g = rec.group
        if g is not None:
            if b > g.bucket:
                self._learn(g, b)
            g.count += 1
        day = t // texts.DAY_MS
        if day > rec.day:
            rec.day = day
            self._wheel(self._day_wheel, day, oid)
        rec.count += 1
        count = rec.count
        busr = rec.busr
        user = ev.user_id
        busr[user] = busr.get(user, 0) + 1
        dev = ev.device_id
        n_burst = 0
        if dev is not None:
            devs = rec.devs
            times = devs.get(dev)
            if times is None:
                devs[dev] = t  # one redemption: a bare time, no list
            elif times.__class__ is int:
                devs[dev] = [times, t]  # type: ignore[list-item]
                n_burst = 2
            else:
                times.append(t)  # type: ignore[union-attr]
                n_burst = len(times)  # type: ignore[arg-type]
                if n_burst >= self.burst_min:
                    cutoff = t - self.burst_window_ms
                    if times[0] < cutoff:  # type: ignore[index]
                        del times[: bisect_left(times, cutoff)]  # type: ignore[arg-type,union-attr]
                    if n_burst > self.max_burst:
                        del times[: n_burst - self.max_burst]  # type: ignore[union-attr]
                    n_burst = len(times)  # type: ignore[arg-type]
        rate = count >= self.min_count and t - rec.first_t >= self.warmup_ms
        burst = n_burst >= self.burst_min
        if not (rate or burst) or t - rec.emit < self.emit_interval_ms:
            return
        if rate:
            usual = self._usual(rec, b)
            rate = count + 1e-9 >= self.ratio * usual
            if rate:  # far above its own level: also above what its peers do right now?
                rate = count + 1e-9 >= self.ratio * usual * self._peer_factor(rec, b, t)
        if rate or burst:
            rec.emit = t
            out.append(self._observation(oid, rec, t, b, rate, dev if burst else None))

    def flagged_within(self, outlet_id: str, t: int, within_ms: int) -> bool:
        """Whether the outlet was reported within ``within_ms`` before event time ``t``."""
        rec = self._outlets.get(outlet_id)
        return rec is not None and 0 <= t - rec.emit <= within_ms

    def _group(self, ev: Redemption, t: int, b: int) -> _Level | None:
        key = (ev.region, ev.channel)
        g = self._groups.get(key)
        if g is None and len(self._groups) < self.max_groups:
            g = self._groups[key] = _Level(t, b, self.slots)
        return g

    # -- the usual level ---------------------------------------------------------------

    def _slot(self, bucket: int) -> int:
        return (bucket % self._per_day) // self._per_slot

    def _usual(self, rec: _Level, b: int) -> float:
        """Busiest usual level of this hour slot and its neighbours, at least ``floor``."""
        s = self._slot(b)
        n = self.slots
        prof, wts = rec.prof, rec.wts
        best = self.floor
        for j in (s - 1, s, (s + 1) % n):
            w = wts[j]
            if w > 0:
                v = prof[j] / w
                if v > best:
                    best = v
        return best

    @staticmethod
    def _level(lv: _Level, s: int) -> float:
        w = lv.wts[s]
        return lv.prof[s] / w if w > 0 else 0.0

    def _peer_factor(self, rec: _Outlet, b: int, t: int) -> float:
        """How far the outlet's peers (same region x channel) are above their usual level
        right now, at least 1: a region-wide promotion lifts every outlet alike.

        Counts over the last bucket length, estimated from the current and the previous
        bucket (the sliding-window approximation), without the outlet itself, less two
        Poisson standard deviations so that the peers' ordinary noise does not count.
        """
        g = rec.group
        if g is None or t - g.first_t < self.warmup_ms:
            return 1.0
        s = self._slot(b)
        usual = self._level(g, s) - self._level(rec, s)
        if usual < self.floor:
            usual = self.floor
        keep = 1.0 - (t - b * self.bucket_ms) / self.bucket_ms
        now = (g.count - rec.count) + (g.prev - rec.prev) * keep
        f = (now - 2.0 * sqrt(usual)) / usual  # minus two Poisson deviations of noise
        return f if f > 1.0 else 1.0

    def _roll(self, rec: _Outlet, b: int, t: int) -> None:
        """Close the outlet's current bucket; drop its stale per-bucket and burst state."""
        self._learn(rec, b)
        if rec.busr:
            rec.busr.clear()
        devs = rec.devs
        if devs:
            cutoff = t - self.burst_window_ms
            stale = None
            for d, v in devs.items():
                if (v if v.__class__ is int else v[-1]) < cutoff:  # type: ignore[index]
                    if stale is None:
                        stale = [d]
                    else:
                        stale.append(d)
            if stale is not None:
                for d in stale:
                    del devs[d]

    def _learn(self, rec: _Level, b: int) -> None:
        """Learn the current bucket and the empty buckets up to ``b``; start bucket ``b``."""
        a = self.alpha
        cur = rec.bucket
        per_day, per_slot = self._per_day, self._per_slot
        s = (cur % per_day) // per_slot
        prof, wts = rec.prof, rec.wts
        x = float(rec.count)
        w = wts[s]
        p = prof[s]
        if w > 0.2:  # about a day of this slot: trust the level enough to clip by it
            cap = p / w
            if cap < self.floor:
                cap = self.floor
            cap *= self.clip
            if x > cap:
                x = cap
        prof[s] = p + a * (x - p)
        wts[s] = w + a * (1.0 - w)
        gap = b - cur - 1
        if gap > 0:  # empty buckets: decay towards zero, slot by slot
            qpow = self._qpow
            if gap >= per_day:
                days = gap // per_day
                f = (1 - a) ** (days * per_slot)
                for j in range(self.slots):
                    prof[j] *= f
                    wts[j] = wts[j] * f + (1 - f)
                gap -= days * per_day
            pos = (cur + 1) % per_day
            while gap > 0:
                j = pos // per_slot
                take = per_slot - pos % per_slot
                if take > gap:
                    take = gap
                f = qpow[take]
                prof[j] *= f
                wts[j] = wts[j] * f + (1 - f)
                pos = (pos + take) % per_day
                gap -= take
        rec.prev = rec.count if b == cur + 1 else 0
        rec.bucket = b
        rec.count = 0

    # -- observations ----------------------------------------------------------------

    def _observation(
        self, oid: str, rec: _Outlet, t: int, b: int, rate: bool, burst_dev: str | None
    ) -> Observation:
        lang = self.lang
        armed = t - rec.first_t >= self.warmup_ms
        usual = self._usual(rec, b) if armed else None
        peers = self._peer_factor(rec, b, t) if armed else 1.0
        details: dict[str, Any] = {
            "outlet_id": oid,
            "rule": "rate" if not burst_dev else ("device_burst" if not rate else "both"),
            "armed": armed,
            "redemptions_in_bucket": rec.count,
            "bucket_minutes": self.bucket_ms // texts.MINUTE_MS,
            "bucket_start": texts.iso(b * self.bucket_ms),
            "usual_per_bucket": None if usual is None else round(usual, 2),
            "peer_factor": round(peers, 2),
            "rate_threshold": None
            if usual is None
            else round(max(self.min_count, self.ratio * usual * peers), 2),
            "devices": texts.top(
                {d: 1 if v.__class__ is int else len(v) for d, v in rec.devs.items()}  # type: ignore[arg-type]
            ),
            "users": texts.top(rec.busr),
        }
        sev = "warning"
        if rate and usual is not None:
            threshold = max(float(self.min_count), self.ratio * usual * peers)
            sev = texts.severity(rec.count, threshold)
            value, baseline = float(rec.count), usual * peers
            summary = texts.outlet_rate(lang, oid, rec.count, self.bucket_ms, usual, rec.region)
        if burst_dev is not None:
            times: list[int] = rec.devs[burst_dev]  # type: ignore[assignment]
            n = len(times)
            details.update(
                {
                    "burst_device": burst_dev,
                    "burst_redemptions": n,
                    "burst_threshold": self.burst_min,
                    "burst_window_minutes": self.burst_window_ms // texts.MINUTE_MS,
                    "burst_span_minutes": round((t - times[0]) / texts.MINUTE_MS, 1),
                }
            )
            if texts.severity(n, self.burst_min) == "critical":
                sev = "critical"
            if not rate:
                value, baseline = float(n), float(self.burst_min)
                summary = texts.outlet_burst(lang, oid, burst_dev, n, t - times[0], rec.region)
        return Observation(
            kind=KIND,
            entity_type="outlet",
            entity_id=oid,
            t=t,
            region=rec.region,
            channel=rec.channel,
            severity=sev,
            value=value,
            baseline=baseline,
            summary=summary,
            details=details,
        )

    # -- state -----------------------------------------------------------------------

    @staticmethod
    def _wheel(wheel: dict[int, list[str]], b: int, key: str) -> None:
        wl = wheel.get(b)
        if wl is None:
            wheel[b] = [key]
        else:
            wl.append(key)

    def expire(self, now: int) -> None:
        """Drop burst state of outlets idle for the burst window; forget idle outlets."""
        outlets = self._outlets
        cutoff_b = (now - self.burst_window_ms) // self.bucket_ms - 1
        for b in [k for k in self._bucket_wheel if k < cutoff_b]:
            for oid in self._bucket_wheel.pop(b):
                rec = outlets.get(oid)
                if rec is not None and rec.bucket <= b:
                    rec.devs.clear()
        cutoff_d = (now - self.outlet_ttl_ms) // texts.DAY_MS
        for d in [k for k in self._day_wheel if k < cutoff_d]:
            for oid in self._day_wheel.pop(d):
                rec = outlets.get(oid)
                if rec is not None and rec.day <= d:
                    del outlets[oid]

    def _evict(self) -> None:
        """Over the cap: forget the outlets idle longest."""
        outlets = self._outlets
        while len(outlets) > self.max_outlets and self._day_wheel:
            d = min(self._day_wheel)
            for oid in self._day_wheel.pop(d):
                rec = outlets.get(oid)
                if rec is not None and rec.day <= d:
                    del outlets[oid]
        if len(outlets) > self.max_outlets:
            for oid in list(outlets)[: len(outlets) - self.max_outlets]:
                del outlets[oid]

    def state_size(self) -> int:
        """Outlets remembered plus devices in burst state."""
        return len(self._outlets) + sum(len(r.devs) for r in self._outlets.values())

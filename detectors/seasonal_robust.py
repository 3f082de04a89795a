"""Streaming univariate anomaly detector for KPI series: envelope novelty + robust seasonality.

Why this shape
--------------
An alert is worth raising when a series does something it has not done before:
it leaves the range it has always lived in (a spike, a crash), its *level*
leaves that range even though single points are noisy (a level shift hidden in
spikes), or, for seasonal business series, it leaves the range of its usual
*deviation from the time-of-day profile* (orders at 10:00 falling to a night-time
level is unremarkable in absolute terms but unprecedented for 10:00).

So the detector keeps a few "envelopes" - the slowly forgetting [low, high] range
of a statistic - and scores how far the current statistic lies outside them,
relative to the envelope's width:

* ``raw``: the value itself;
* ``level``: short moving averages of the value (``windows``), which catch level
  and rate changes that single noisy points hide;
* ``seasonal``: the deviation from a robust time-of-day profile (and its moving
  average), used only once the profile explains the series markedly better than
  a flat level (``seasonal_gate``), so non-seasonal series are not polluted by a
  noisy profile.

The profile is robust: each slot follows an exponentially weighted location whose
updates are clipped to a few mean absolute deviations (a Huber-type update), so
outliers and the anomalies themselves barely move it.  Envelopes deliberately *do*
absorb what they have seen - once a new level has been seen it is no longer news -
which is what makes the score a novelty score rather than a distance.

Evidence from the channels is fused by a weighted maximum and mapped to [0, 1]
monotonically.  A short refractory period damps the score after a strong
detection, because a change is one event, not one event per sample.  The output
is a score, not a decision: thresholds belong to the alerting layer.

Everything is pure Python with O(1) work and O(slots + max(windows)) memory per
series; there is no randomness, and a pickled copy continues identically.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime

__all__ = ["SeasonalRobustDetector"]

_DAY = 86400


class _Envelope:
    """Slowly forgetting [lo, hi] range of a statistic and the exceedance beyond it.

    Forgetting shrinks both edges towards a slow running centre with the given
    half-life (in samples); ``half_life=0`` never forgets.
    """

    __slots__ = ("centre", "decay", "hi", "lo")

    def __init__(self, half_life: float) -> None:
        self.decay = 2.0 ** (-1.0 / half_life) if half_life > 0 else 1.0
        self.lo = math.nan
        self.hi = math.nan
        self.centre = math.nan

    def exceedance(self, v: float) -> float:
        """Distance outside [lo, hi] in units of its width (0 inside, or before any width)."""
        width = self.hi - self.lo
        if not width > 0.0:
            return 0.0
        if v > self.hi:
            return (v - self.hi) / width
        if v < self.lo:
            return (self.lo - v) / width
        return 0.0

    def update(self, v: float) -> None:
        if self.lo != self.lo:  # nan: first value
            self.lo = self.hi = self.centre = v
            return
        if self.decay < 1.0:
            c = self.centre
            self.hi = c + (self.hi - c) * self.decay
            self.lo = c - (c - self.lo) * self.decay
            self.centre = c + 0.01 * (v - c)
        if v > self.hi:
            self.hi = v
        if v < self.lo:
            self.lo = v


class _MovingMean:
    """Mean of the last ``w`` values with O(1) updates."""

    __slots__ = ("buf", "total", "w")

    def __init__(self, w: int) -> None:
        self.w = w
        self.buf: deque[float] = deque(maxlen=w)
        self.total = 0.0

    def peek(self, v: float) -> float | None:
        """Mean including ``v`` as the newest value, without storing it."""
        if len(self.buf) < self.w - 1:
            return None
        drop = self.buf[0] if len(self.buf) == self.w else 0.0
        return (self.total - drop + v) / self.w

    def push(self, v: float) -> None:
        if len(self.buf) == self.w:
            self.total -= self.buf[0]
        self.buf.append(v)
        self.total += v
        if len(self.buf) == self.w and abs(self.total) > 1e12:  # keep rounding bounded
            self.total = math.fsum(self.buf)


class _Cadence:
    """Infers a regular sampling interval and maps timestamps to time-of-day slots."""

    __slots__ = ("deltas", "last", "max_slots", "period", "width")

    def __init__(self, max_slots: int) -> None:
        self.max_slots = max_slots
        self.deltas: list[float] = []
        self.last: datetime | None = None
        self.period = 0.0  # seconds between samples once known (0 = unknown/irregular)
        self.width = 0.0  # seconds per slot

    def slot(self, t: datetime | None) -> int | None:
        if t is None or self.width <= 0.0:
            return None
        sec = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond * 1e-6
        return int(sec // self.width)

    def observe(self, t: datetime | None) -> None:
        if t is None:
            return
        if self.last is not None and self.period == 0.0:
            self.deltas.append((t - self.last).total_seconds())
            if len(self.deltas) >= 24:
                ds = sorted(self.deltas)
                mode = ds[len(ds) // 2]
                regular = sum(1 for d in ds if d == mode) >= 0.8 * len(ds)
                if regular and 0 < mode <= _DAY / 4:
                    self.period = mode
                    self.width = max(mode, _DAY / self.max_slots)
                else:
                    del self.deltas[:12]
        self.last = t


class _SeasonalProfile:
    """Robust exponentially weighted value per time-of-day slot, plus a fit diagnostic.

    ``err_seasonal`` / ``err_level`` are EW mean absolute errors of the profile and
    of a flat slow level; the profile is trusted only when it is clearly better.
    """

    __slots__ = ("clip", "err_level", "err_seasonal", "level", "n", "rate", "values")

    def __init__(self, rate: float, clip: float) -> None:
        self.rate = rate
        self.clip = clip
        self.values: dict[int, float] = {}
        self.level = math.nan
        self.err_seasonal = 0.0
        self.err_level = 0.0
        self.n = 0

    def deviation(self, slot: int | None, x: float) -> float | None:
        if slot is None:
            return None
        p = self.values.get(slot)
        return None if p is None else x - p

    def update(self, slot: int, x: float) -> None:
        if self.level != self.level:
            self.level = x
        p = self.values.get(slot)
        if p is None:
            self.values[slot] = x
        else:
            r = x - p
            bound = self.clip * self.err_seasonal if self.n > 50 else math.inf
            self.err_seasonal += 0.005 * (min(abs(r), bound) - self.err_seasonal)
            self.err_level += 0.005 * (min(abs(x - self.level), math.inf) - self.err_level)
            self.values[slot] = p + self.rate * max(-bound, min(bound, r))
            self.n += 1
        self.level += 0.01 * (x - self.level)


class SeasonalRobustDetector:
    """Envelope-novelty anomaly detector with a robust time-of-day profile.

    ``score_one(x, t)`` scores ``x`` against what was learnt *before* it (it does not
    change state); ``learn_one(x, t)`` then absorbs it.  Scores are in [0, 1]; 0
    means "nothing new" and is also returned until ``warmed_up``.

    >>> from datetime import datetime, timedelta
    >>> det = SeasonalRobustDetector(warmup=50)
    >>> t0 = datetime(2024, 1, 1)
    >>> scores = []
    >>> for i in range(300):
    ...     t = t0 + timedelta(minutes=5 * i)
    ...     x = 10.0 + (i % 7) * 0.1 + (25.0 if i == 250 else 0.0)
    ...     scores.append(det.score_one(x, t))
    ...     det.learn_one(x, t)
    >>> det.warmed_up, scores[10], scores[200]
    (True, 0.0, 0.0)
    >>> scores[250] > 0.9
    True

    Parameters
    ----------
    warmup:
        Samples before any non-zero score (the envelopes need some history).
    windows:
        Moving-average lengths (in samples) whose envelopes detect level changes.
    window_weight, seasonal_weight:
        Weights of the level and seasonal channels relative to the raw channel.
    half_life:
        Envelope forgetting half-life in samples (0: remember forever).
    seasonal_rate, seasonal_clip:
        EW rate of a profile slot per visit, and the Huber clip in mean absolute errors.
    seasonal_gate:
        Use the seasonal channel only if its error is below ``gate`` x the flat error.
    seasonal_windows:
        Moving-average lengths applied to the seasonal deviation (1 = the deviation).
    seasonal_warmup_days:
        Days of profile history before the seasonal channel may be used.
    slots_per_day:
        Maximum time-of-day resolution of the profile.
    refractory, refractory_damping, refractory_level:
        After a sample whose evidence exceeds ``refractory_level``, multiply the
        evidence of the next ``refractory`` samples by ``refractory_damping``.
    score_scale:
        Evidence that maps to score 0.5 (``score = e / (e + score_scale)``).
    """

    def __init__(
        self,
        *,
        warmup: int = 150,
        windows: tuple[int, ...] = (12, 48),
        window_weight: float = 0.5,
        seasonal_weight: float = 0.3,
        half_life: float = 0.0,
        seasonal_rate: float = 0.1,
        seasonal_clip: float = 4.0,
        seasonal_gate: float = 0.7,
        seasonal_windows: tuple[int, ...] = (1, 12),
        seasonal_warmup_days: float = 3.0,
        slots_per_day: int = 288,
        refractory: int = 288,
        refractory_damping: float = 0.3,
        refractory_level: float = 0.005,
        score_scale: float = 0.01,
        refractory_mode: str = "damp",
        sudden: float = 0.0,
        vol_windows: tuple[int, ...] = (),
        vol_weight: float = 0.0,
    ) -> None:
        self.vol_weight = vol_weight
        self._vol = [(_MovingMean(w), _Envelope(half_life)) for w in vol_windows]
        self.sudden = sudden
        self._prev = math.nan
        self.refractory_mode = refractory_mode
        if warmup < 1:
            raise ValueError("warmup must be >= 1")
        if any(w < 1 for w in (*windows, *seasonal_windows)):
            raise ValueError("window lengths must be >= 1")
        self.warmup = warmup
        self.window_weight = window_weight
        self.seasonal_weight = seasonal_weight
        self.seasonal_gate = seasonal_gate
        self.seasonal_warmup_days = seasonal_warmup_days
        self.refractory = refractory
        self.refractory_damping = refractory_damping
        self.refractory_level = refractory_level
        self.score_scale = score_scale
        self.n = 0
        self._raw = _Envelope(half_life)
        self._levels = [(_MovingMean(w), _Envelope(half_life)) for w in windows]
        self._cadence = _Cadence(slots_per_day)
        self._profile = _SeasonalProfile(seasonal_rate, seasonal_clip)
        self._seasonal = [(_MovingMean(w), _Envelope(half_life)) for w in seasonal_windows]
        self._last_alert = -(10**12)

    # ------------------------------------------------------------------ public API
    @property
    def warmed_up(self) -> bool:
        """True once ``warmup`` samples have been learnt (scores may then be non-zero)."""
        return self.n >= self.warmup

    def score_one(self, x: float, t: datetime | None = None) -> float:
        """Anomaly score of ``x`` (at time ``t``) in [0, 1], without learning it."""
        if not self.warmed_up or x != x:
            return 0.0
        e = self._evidence(float(x), t)
        since = self.n - self._last_alert
        if since <= self.refractory:
            if self.refractory_mode == "linear":
                d0 = self.refractory_damping
                e *= d0 + (1.0 - d0) * since / (self.refractory + 1)
            else:
                e *= self.refractory_damping
        if e <= 0.0:
            return 0.0
        return e / (e + self.score_scale) if e < math.inf else 1.0

    def learn_one(self, x: float, t: datetime | None = None) -> None:
        """Absorb ``x``; non-finite values are ignored."""
        x = float(x)
        if not math.isfinite(x):
            return
        if self.warmed_up and self._evidence(x, t) > self.refractory_level:
            self._last_alert = self.n
        self._cadence.observe(t)
        if self._prev == self._prev:
            dv = abs(x - self._prev)
            for mm, env in self._vol:
                m = mm.peek(dv)
                if m is not None:
                    env.update(m)
                mm.push(dv)
        self._raw.update(x)
        self._prev = x
        for mm, env in self._levels:
            m = mm.peek(x)
            if m is not None:
                env.update(m)
            mm.push(x)
        slot = self._cadence.slot(t)
        d = self._profile.deviation(slot, x)
        if d is not None:
            for mm, env in self._seasonal:
                m = mm.peek(d)
                if m is not None:
                    env.update(m)
                mm.push(d)
        if slot is not None:
            self._profile.update(slot, x)
        self.n += 1

    def evidence(self, x: float, t: datetime | None = None) -> dict[str, float]:
        """Per-channel exceedances for ``x`` (diagnostics; not weighted or damped)."""
        out = {"raw": self._raw.exceedance(x)}
        for (mm, env), name in zip(self._levels, self._level_names(), strict=True):
            m = mm.peek(x)
            out[name] = env.exceedance(m) if m is not None else 0.0
        if self._seasonal_active():
            d = self._profile.deviation(self._cadence.slot(t), x)
            for (mm, env), name in zip(self._seasonal, self._seasonal_names(), strict=True):
                m = mm.peek(d) if d is not None else None
                out[name] = env.exceedance(m) if m is not None else 0.0
        return out

    # ------------------------------------------------------------------ internals
    def _level_names(self) -> list[str]:
        return [f"level_{mm.w}" for mm, _ in self._levels]

    def _seasonal_names(self) -> list[str]:
        return [f"seasonal_{mm.w}" for mm, _ in self._seasonal]

    def _seasonal_active(self) -> bool:
        prof, cad = self._profile, self._cadence
        if cad.period <= 0.0 or prof.n < self.seasonal_warmup_days * _DAY / cad.period:
            return False
        return prof.err_seasonal < self.seasonal_gate * prof.err_level

    def _evidence(self, x: float, t: datetime | None) -> float:
        e = self._raw.exceedance(x)
        if self.sudden > 0 and e > 0 and self._prev == self._prev:
            jump = abs(x - self._prev) / (self._raw.hi - self._raw.lo)
            e *= min(1.0, jump / self.sudden)
        for mm, env in self._levels:
            m = mm.peek(x)
            if m is not None:
                e = max(e, self.window_weight * env.exceedance(m))
        if self.vol_weight > 0.0 and self._prev == self._prev:
            dv = abs(x - self._prev)
            for mm, env in self._vol:
                m = mm.peek(dv)
                if m is not None and m > env.hi:
                    e = max(e, self.vol_weight * env.exceedance(m))
        if self.seasonal_weight > 0.0 and self._seasonal_active():
            d = self._profile.deviation(self._cadence.slot(t), x)
            if d is not None:
                for mm, env in self._seasonal:
                    m = mm.peek(d)
                    if m is not None:
                        e = max(e, self.seasonal_weight * env.exceedance(m))
        return e

"""高扫码低核销: scans at or above their usual level while redemptions fall well below theirs.

Redemptions trail scans by minutes (offline) to hours (e-commerce), so a single
minute's redemption rate is meaningless. The detector compares like with like:
over a trailing window it takes the scans actually seen and the redemptions
actually seen, and asks how many redemptions those scans usually bring in that
window at that hour of the day (a ratio learned per entity and hour, which
absorbs the entity's typical delay). It fires when, for a sustained number of
buckets,

* scans are at or above their usual level for the hour (so "everything down"
  is not mistaken for an execution failure; that case is reported by
  ``kpi_anomaly``),
* the expected number of redemptions is large enough to judge,
* redemptions are below ``ratio_threshold`` of the expected number, and
* so few redemptions would be very unlikely by chance (Poisson lower tail below
  ``max_p``) even against what at most ``p_scan_cap`` × the usual number of scans
  would bring. Redemptions of a sudden surge of scans arrive later, so a small
  outlet whose scans double for half an hour is short of its "expected" number
  for a while by lag alone; a genuine failure is short of the usual level too.

A failure that is plain in one bucket is not made to wait for the hour: when the
latest ``fast_buckets`` alone hold enough expected redemptions (``fast_min_expected``),
redemptions below ``fast_ratio`` of expected with a Poisson tail below ``fast_max_p``
(against the capped expectation, as above) fire at once. Big regions whose terminals
fail are reported within one bucket; small keys wait for the hour's evidence.

It resolves (stops observing) once redemptions recover above
``recover_ratio`` of expected. Baselines learn only from buckets that were
not flagged, so an incident does not teach the detector that it is normal.
No I/O, no randomness; the state pickles.

>>> det = HighScanLowRedemption(bucket_ms=600_000, window_buckets=6, warmup_buckets=12)
>>> H = 3_600_000
>>> fired = []
>>> for b in range(60):
...     reds = 50 if b < 40 else 5          # redemptions collapse at bucket 40
...     obs = det.update("CN-SD", b * 600_000, scans=100, redemptions=reds)
...     fired.append(obs is not None)
>>> fired.index(True) >= 40, fired[39]
(True, False)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

HOUR_MS = 3_600_000


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space (k is small when it matters)."""
    if lam <= 0:
        return 1.0
    if k >= lam:
        return 1.0  # not a low count; the caller only asks about shortfalls
    log_term = -lam  # i = 0
    total = math.exp(log_term)
    for i in range(1, k + 1):
        log_term += math.log(lam / i)
        total += math.exp(log_term)
    return min(total, 1.0)


@dataclass
class _Entity:
    window: deque[tuple[int, int]]
    buckets_seen: int = 0
    usual_scans: list[float | None] = field(default_factory=lambda: [None] * 24)
    usual_ratio: list[float | None] = field(default_factory=lambda: [None] * 24)
    low_streak: int = 0
    # how far the windowed redemption ratio usually strays from its usual value, per slot
    # (exponentially weighted mean absolute deviation, and its weight for bias correction)
    ratio_dev: list[float] = field(default_factory=lambda: [0.0] * 24)
    ratio_dev_w: list[float] = field(default_factory=lambda: [0.0] * 24)
    firing: bool = False


@dataclass(frozen=True, slots=True)
class HslrVerdict:
    """The evidence for one bucket that looks like 高扫码低核销."""

    scans: int
    usual_scans: float
    redemptions: int
    expected: float
    ratio: float  # redemptions / expected


class HighScanLowRedemption:
    """One instance watches many entities (region×channel keys or outlets).

    Parameters (defaults in brackets):
    ``bucket_ms`` [10 min] size of the buckets fed to :meth:`update`;
    ``window_buckets`` [6] trailing buckets compared (1 hour);
    ``warmup_buckets`` [144] buckets of history before the entity is armed (24 h);
    ``ratio_threshold`` [0.4] fire below this share of expected redemptions;
    ``recover_ratio`` [0.7] stop firing above this share;
    ``scan_floor`` [0.8] scans must be at least this share of usual;
    ``min_expected`` [20] expected redemptions needed to judge;
    ``sustain`` [2] consecutive low buckets before firing;
    ``max_p`` [1e-4] the chance of so few redemptions must be below this;
    ``p_scan_cap`` [1.5] scans above this multiple of usual do not raise the number the
    chance is computed against (0: no cap);
    ``alpha`` [0.1] learning rate of the hourly baselines;
    ``fast_buckets`` [6] the fast judgement looks at runs of the latest 1 to this many
    buckets (0: off); ``fast_ratio`` [0.3], ``fast_max_p`` [1e-6, shared by the run
    lengths] and ``fast_min_expected`` [40] its share, chance and volume;
    ``dev_k`` [3] the hour's shortfall of the redemption ratio must also exceed this many
    times its usual deviation for the hour of day (0: off).
    """

    def __init__(
        self,
        *,
        bucket_ms: int = 600_000,
        window_buckets: int = 6,
        warmup_buckets: int = 144,
        ratio_threshold: float = 0.4,
        recover_ratio: float = 0.7,
        scan_floor: float = 0.8,
        min_expected: float = 20.0,
        sustain: int = 2,
        max_p: float = 1e-4,
        p_scan_cap: float = 1.5,
        alpha: float = 0.1,
        max_entities: int = 200_000,
        fast_buckets: int = 6,
        fast_ratio: float = 0.3,
        fast_max_p: float = 1e-6,
        fast_min_expected: float = 40.0,
        dev_k: float = 3.0,
    ) -> None:
        self.bucket_ms = bucket_ms
        self.window_buckets = window_buckets
        self.warmup_buckets = warmup_buckets
        self.ratio_threshold = ratio_threshold
        self.recover_ratio = recover_ratio
        self.scan_floor = scan_floor
        self.min_expected = min_expected
        self.sustain = sustain
        self.max_p = max_p
        self.p_scan_cap = p_scan_cap
        self.alpha = alpha
        self.max_entities = max_entities
        self.fast_buckets = min(fast_buckets, window_buckets)
        self.fast_ratio = fast_ratio
        self.fast_max_p = fast_max_p
        self.fast_min_expected = fast_min_expected
        self.dev_k = dev_k
        self.entities: dict[str, _Entity] = {}

    def update(
        self, entity: str, bucket_start: int, *, scans: int, redemptions: int
    ) -> HslrVerdict | None:
        """Feed one completed bucket; returns evidence while the entity looks 高扫码低核销."""
        e = self.entities.get(entity)
        if e is None:
            if len(self.entities) >= self.max_entities:
                self.entities.pop(next(iter(self.entities)))
            e = self.entities[entity] = _Entity(window=deque(maxlen=self.window_buckets))
        e.window.append((scans, redemptions))
        e.buckets_seen += 1
        if len(e.window) < self.window_buckets:
            return None
        w_scans = sum(s for s, _ in e.window)
        w_reds = sum(r for _, r in e.window)
        slot = (bucket_start // HOUR_MS) % 24
        usual_s = e.usual_scans[slot]
        usual_r = e.usual_ratio[slot]
        verdict = None
        if e.buckets_seen >= self.warmup_buckets and usual_s is not None and usual_r is not None:
            expected = min(usual_r, 1.0) * w_scans  # a code is redeemed at most once
            ratio = w_reds / expected if expected > 0 else 1.0
            judged = w_scans >= self.scan_floor * usual_s and expected >= self.min_expected
            if e.firing:
                low = judged and ratio < self.recover_ratio
            else:
                cap = self.p_scan_cap
                p_expected = (
                    min(usual_r, 1.0) * min(w_scans, cap * usual_s) if cap > 0 else expected
                )
                low = (
                    judged
                    and ratio < self.ratio_threshold
                    and poisson_cdf(w_reds, p_expected) < self.max_p
                    and self._beyond_usual_spread(e, slot, usual_r, w_reds, w_scans)
                )
            fast = not e.firing and judged and self._fast(e, usual_s, usual_r)
            if low or fast:
                e.low_streak += 1
            else:
                e.low_streak = 0
                e.firing = False
            if e.low_streak >= self.sustain or fast:
                e.firing = True
                verdict = HslrVerdict(w_scans, usual_s, w_reds, expected, ratio)
        if e.low_streak == 0:  # learn only from buckets that look normal
            a = self.alpha
            e.usual_scans[slot] = w_scans if usual_s is None else usual_s + a * (w_scans - usual_s)
            if w_scans > 0:
                r = w_reds / w_scans
                if usual_r is not None:
                    dev = e.ratio_dev[slot]
                    e.ratio_dev[slot] = dev + a * (abs(r - usual_r) - dev)
                    e.ratio_dev_w[slot] += a * (1.0 - e.ratio_dev_w[slot])
                e.usual_ratio[slot] = r if usual_r is None else usual_r + a * (r - usual_r)
        return verdict

    def _beyond_usual_spread(
        self, e: _Entity, slot: int, usual_r: float, w_reds: int, w_scans: int
    ) -> bool:
        """The window's redemption ratio is further below usual than ``dev_k`` times its
        usual deviation. Poisson chance assumes redemptions arrive independently; where
        they come in bursts (group-buying pick-ups hours after the scans) a whole hour
        can be short without anything being wrong, and that entity's own history shows it.
        """
        w = e.ratio_dev_w[slot]
        if self.dev_k <= 0 or w <= 0 or w_scans <= 0:
            return True
        spread = e.ratio_dev[slot] / w
        return usual_r - w_reds / w_scans > self.dev_k * spread

    def _fast(
        self,
        e: _Entity,
        usual_s: float,
        usual_r: float,
        partial: tuple[int, int, float] | None = None,
    ) -> bool:
        """Some trailing run of the latest ``fast_buckets`` buckets (newest first, after
        ``partial``: the scans, redemptions and elapsed share of a bucket still open) is
        plainly short of redemptions on its own.

        Every run length is a separate look at the data, so each must clear
        ``fast_max_p`` divided by the number of lengths looked at (Bonferroni): a failure
        shows in the shortest run that holds enough volume, and a chance dip of one
        length is not given several tries."""
        n = self.fast_buckets
        if n <= 0:
            return False
        runs: list[tuple[int, int, float]] = [partial] if partial is not None else []
        runs += [(s, r, 1.0) for s, r in reversed(e.window)]
        runs = runs[:n]
        max_p = self.fast_max_p / len(runs)
        rate = min(usual_r, 1.0)
        per_bucket = usual_s / self.window_buckets  # usual_s is per window
        f_scans = f_reds = 0
        share = 0.0
        for s, r, w in runs:
            f_scans += s
            f_reds += r
            share += w
            expected = rate * f_scans
            if expected < self.fast_min_expected or f_scans < self.scan_floor * per_bucket * share:
                continue
            # a short run is the most exposed to lag after a surge of scans: its chance is
            # computed against no more scans than usual at all
            p_expected = (
                rate * min(f_scans, per_bucket * share) if self.p_scan_cap > 0 else expected
            )
            if f_reds < self.fast_ratio * expected and poisson_cdf(f_reds, p_expected) < max_p:
                return True
        return False

    def peek(
        self, entity: str, bucket_start: int, *, scans: int, redemptions: int, share: float
    ) -> HslrVerdict | None:
        """Judge a bucket still open (``share`` of it elapsed) with the fast judgement,
        without learning or changing any state: a terminal failure in a busy key shows
        within minutes, before its bucket completes. Call it once per closed minute so
        the verdicts do not depend on how the stream was batched."""
        e = self.entities.get(entity)
        if e is None or e.firing or e.buckets_seen < self.warmup_buckets:
            return None
        if len(e.window) < self.window_buckets:
            return None
        slot = (bucket_start // HOUR_MS) % 24
        usual_s, usual_r = e.usual_scans[slot], e.usual_ratio[slot]
        if usual_s is None or usual_r is None:
            return None
        if not self._fast(e, usual_s, usual_r, (scans, redemptions, share)):
            return None
        # the evidence: the open bucket plus the latest full ones, over one window's span
        recent = list(e.window)[-(self.window_buckets - 1) :] if self.window_buckets > 1 else []
        w_scans = scans + sum(s for s, _ in recent)
        w_reds = redemptions + sum(r for _, r in recent)
        expected = min(usual_r, 1.0) * w_scans
        return HslrVerdict(
            w_scans, usual_s, w_reds, expected, w_reds / expected if expected > 0 else 1.0
        )

    def firing(self, entity: str) -> bool:
        e = self.entities.get(entity)
        return e is not None and e.firing

    def looks_low(self, entity: str) -> bool:
        """True while the entity's latest bucket was low or it is firing."""
        e = self.entities.get(entity)
        return e is not None and (e.firing or e.low_streak > 0)

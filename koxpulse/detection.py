"""The detection step: fraud detectors on events, KPI detectors on closed windows, one lifecycle.

Runs after the KPI aggregator, on what it emits per batch: the accepted
events (fraud detectors, per-outlet 高扫码低核销 counts) and the closed minute
rows (region × channel series). Minute rows are rolled up into 10-minute
buckets before the series detectors see them: per-minute counts of a region
are too noisy to judge, and one model call per bucket keeps detectors off the
hot path. Every observation goes through one :class:`AlertTracker`, so each
incident is one alert with a stable id that resolves when it has been quiet.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from detectors.fraud import FraudDetectors, FraudParams
from detectors.high_scan_low_redemption import HighScanLowRedemption, HslrVerdict, poisson_cdf
from detectors.seasonal_robust import SeasonalRobustDetector
from koxpulse.alerts import Alert, AlertTracker, Observation
from koxpulse.events import AnyEvent, Redemption, Scan
from koxpulse.kpi import KpiOutput, KpiRow
from koxpulse.timeutil import ms_to_datetime, ms_to_iso

BUCKET_MS = 600_000
_ORDER = lambda item: (item[1], item[0].event_id)  # noqa: E731
_TS = itemgetter(1)
_FIRST = itemgetter(0)
Run = list[tuple[AnyEvent, int]]  # accepted events of one batch, in (ts, event_id) order
HOUR_BUCKETS = 6
METRICS = ("scans", "redemption_rate", "orders", "repurchase_rate")


@dataclass(frozen=True, slots=True)
class DetectionParams:
    """Tunables of the series detectors (fraud thresholds live in ``FraudParams``)."""

    kpi_threshold: float = 0.8  # detector score at or above which a bucket is anomalous
    kpi_warmup_buckets: int = 108  # 18 h of 10-minute buckets per series before alerts
    kpi_band_k: float = 6.5  # band = usual ± k × robust spread, shown in details
    # ... and at least this far from usual, relative to it: a 10 % wobble of a volatile
    # series is not worth a page even when it leaves a narrow band
    kpi_min_change: float = 0.5
    # a rate (redemption, repurchase) is judged only over at least this many scans or
    # buyers in the trailing hour: at night, lagging redemptions of the evening's scans
    # make an hourly rate swing far above 100 % by themselves
    kpi_rate_min_denominator: int = 200
    # a series outside its band this many buckets in a row alerts at a lower score
    kpi_sustain: int = 3
    kpi_sustain_threshold: float = 0.3
    # early look at a count (scans, orders) before its 10-minute bucket is complete: after
    # each closed minute, the partial count alerts when so many (or so few) events would
    # be this unlikely (Poisson tail) even at the edge of the usual band; 0 turns it off
    kpi_early_max_p: float = 1e-6
    quiet_ms: int = 30 * 60_000  # an incident resolves after this long without evidence
    outlet_window_buckets: int = 6  # 1 h, like regions; smaller outlets are simply not judged
    outlet_min_expected: float = 15.0
    outlet_sustain: int = 3
    # hundreds of outlets are judged every bucket: the chance of a shortfall by luck alone
    # must be smaller for one outlet than for one of a few dozen regions
    outlet_max_p: float = 1e-5
    # an outlet's shortfall plain over its latest 1 to 6 buckets alone fires without waiting
    # for the sustained hourly judgement, once this many redemptions were expected there
    # (its chance must clear the fast judgement's 1e-6, shared by the run lengths)
    outlet_fast_min_expected: float = 15.0
    # an hour's shortfall must also exceed this many times the usual deviation of the
    # key's (or outlet's) redemption ratio at that hour: bursty redemptions (group-buying
    # pick-ups) make a short hour usual there, however unlikely Poisson makes it look
    hslr_dev_k: float = 3.0
    # 高扫码低核销 of a region × channel fires when an hour's redemptions fall below this
    # share of what its scans usually bring, and resolves above the recover share. Outlets
    # keep the detector's stricter 0.4 / 0.7: hundreds of small ones are judged, and a
    # group-buying outlet's pick-ups come in bursts
    hslr_ratio: float = 0.6
    hslr_recover_ratio: float = 0.8
    # an hourly count (scans, orders) outside its band and at least kpi_min_change from
    # usual for this many buckets in a row alerts whatever the novelty score, while the
    # latest 10-minute bucket still shows that change (so the hour does not echo an
    # incident that is over): a moderate, sustained change that the novelty score absorbs
    # as it builds up (0: off)
    kpi_hour_sustain: int = 2
    # ... its doubt: the Poisson tail of the hour's count at kpi_min_change from usual
    kpi_hour_max_p: float = 1e-3
    # a repurchase rate climbs by itself while the order history behind it is young (a
    # buyer is "repeat" only once an earlier order has been seen): a rise is judged only
    # once the series is this old; a fall is judged as soon as the series is armed
    kpi_repurchase_rise_after_days: float = 7.0
    # the same for a rising redemption rate: redemptions trail scans by up to hours, so
    # the first nights of a series lack the evening's late redemptions and its usual
    # night-time rate starts too low
    kpi_redemption_rise_after_days: float = 2.0


@dataclass
class _Band:
    """Hour-of-day robust location and spread of a series: the usual range that a bucket
    must leave to alert, and the range shown in the alert.

    The spread is an exponentially weighted mean absolute deviation that starts at zero,
    so it is divided by the weight it has gathered (as Adam corrects its moments): after
    one day, six buckets per slot, it would otherwise be half its size, and a busy
    series, whose Poisson noise is small beside its level, would look anomalous at every
    ramp within an hour. A slot gives a band only once a whole hour of it was seen
    (``min_seen`` buckets), which is on an earlier day: the hours after a series starts
    have no history of their own.
    """

    centre: list[float | None] = field(default_factory=lambda: [None] * 24)
    spread: list[float] = field(default_factory=lambda: [0.0] * 24)
    seen: list[int] = field(default_factory=lambda: [0] * 24)
    alpha: float = 0.1
    min_seen: int = HOUR_BUCKETS

    def update(self, slot: int, x: float, *, outside: bool = False, spread: bool = True) -> None:
        """Learn one bucket; ``spread=False`` moves the centre only (by the clipped step) and
        leaves the spread's sum as it is."""
        self.seen[slot] += 1
        c = self.centre[slot]
        if c is None:
            self.centre[slot] = x
            return
        dev = x - c
        s = self._spread(slot)
        limit = 3 * s if s > 0 else abs(dev)
        step = max(-limit, min(limit, dev)) if limit > 0 else dev
        a = self.alpha
        self.centre[slot] = c + a * step
        if spread:
            raw = self.spread[slot]
            self.spread[slot] = raw + a * ((abs(step) if outside else abs(dev)) - raw)

    def _spread(self, slot: int) -> float:
        n = self.seen[slot] - 1  # deviations gathered (the first value sets the centre)
        if n <= 0:
            return 0.0
        return self.spread[slot] / (1.0 - (1.0 - self.alpha) ** n)

    def band(self, slot: int, k: float, n: float | None) -> tuple[float, float] | None:
        """Usual range; never narrower than sampling noise allows (Poisson or binomial).

        ``n`` is the denominator of a rate (None for counts).
        """
        c = self.centre[slot]
        if c is None or self.seen[slot] < self.min_seen:
            return None
        sigma = 1.2533 * self._spread(slot)  # mean absolute deviation -> sigma
        if n is None:
            noise = math.sqrt(max(c, 1.0))
        else:
            p = min(max(c, 0.0), 1.0)
            noise = math.sqrt(max(p * (1 - p), 0.01) / max(n, 1.0))
        half = k * max(sigma, noise)
        return (c - half, c + half)


class _SeriesMonitor:
    """One KPI series of one region × channel: detector score, band, direction."""

    def __init__(self, params: DetectionParams) -> None:
        self.params = params
        # The NAB defaults, re-timed for 10-minute buckets: an hour-of-day profile (24 slots,
        # each seen six times a day, so it is usable after one day where 144 ten-minute
        # slots seen once a day were not; it also matches the band's slots) that may be
        # used after one day (the contract arms KPI alerts within 48 h), a 30-day
        # memory so an old outage stops masking new ones, and 6 h of post-alert damping.
        self.model = SeasonalRobustDetector(
            warmup=params.kpi_warmup_buckets,
            slots_per_day=24,
            seasonal_warmup_days=1.0,
            half_life=30 * 144,
            refractory=36,
        )
        self.band = _Band()
        self.seen = 0
        self.streak = 0  # buckets in a row outside the band

    def step(
        self,
        t: int,
        x: float,
        n: float | None = None,
        *,
        sustained: bool = True,
        latest: tuple[float, float | None] | None = None,
        prev: float | None = None,
        whole: bool = False,
        lift: float = 1.0,
    ) -> tuple[float, tuple[float, float] | None, bool]:
        """Score and judge one bucket; learn from it unless it is flagged.

        ``latest`` is given for an hourly count: the latest 10-minute bucket and its usual
        level, for the sustained-hour rule (``kpi_hour_sustain``). ``whole`` asks a
        10-minute count the early look's question too, over the whole bucket (``prev``: the
        bucket before): a bucket the early look reported is not learnt as usual, and an
        outage stays in evidence after the novelty score has absorbed it. ``lift`` is how far
        every other key's hourly count is from its usual level together: a weekend or a
        holiday lifts them all, which the hour-of-day profile cannot know in its first
        week, so the sustained hour asks for its change beyond that common lift."""
        when = ms_to_datetime(t)
        slot = (t // 3_600_000) % 24
        score = self.model.score_one(x, when)
        band = self.band.band(slot, self.params.kpi_band_k, n)
        self.seen += 1
        p = self.params
        outside = band is not None and not band[0] <= x <= band[1]
        unusual = (
            outside
            and self.seen > p.kpi_warmup_buckets
            and band is not None
            and abs(x - (band[0] + band[1]) / 2)
            >= p.kpi_min_change * max(abs(band[0] + band[1]) / 2, 1e-9)
        )
        self.streak = self.streak + 1 if unusual else 0
        # The detector is a novelty score: it is strongest on the first bucket of a change and
        # then absorbs it. A change it scored only moderately is still an incident once it
        # has stayed outside the usual band for a sustained stretch. Not for rates: a stream
        # whose order history starts empty sees its repurchase rate climb for weeks, and
        # lagging redemptions drift with the day; only a sharp change of a rate alerts.
        flagged = unusual and (
            score >= p.kpi_threshold
            or (sustained and self.streak >= p.kpi_sustain and score >= p.kpi_sustain_threshold)
        )
        # An hourly count (``latest`` given) that slides away as a moderate change builds up
        # is absorbed by the novelty score before it scores, and its onset widens the band.
        # It alerts once it has been outside the band and kpi_min_change from usual for
        # kpi_hour_sustain buckets in a row, the latest of them changed beyond Poisson doubt
        # even at kpi_min_change from usual (the early look's question). An hour changed
        # beyond doubt does not widen the band: the onset of a change is no evidence of the
        # series' usual spread. Whatever flags an hour, the latest 10-minute bucket must
        # still show the change: an hour does not echo an incident that is already over.
        change = 0
        if latest is not None and band is not None:
            change = self._hour_change(slot, x, lift)
            beyond = x < band[0] if change < 0 else x > band[1] if change > 0 else False
            if beyond and unusual and self.streak >= p.kpi_hour_sustain > 0:
                flagged = True
            value, usual = latest
            if flagged and usual is not None and usual > 0:
                m = p.kpi_min_change
                fell = x < (band[0] + band[1]) / 2
                flagged = value <= (1 - m) * usual if fell else value >= (1 + m) * usual
        if whole and not flagged and self.early(t, int(x), BUCKET_MS // 60_000, prev) is not None:
            flagged = True
        if not flagged:  # thresholding never learns from the points it flags
            self.model.learn_one(x, when)
            # and a point outside the usual range moves the band by no more than a clipped
            # step: one unflagged bucket of an outage must not make the rest look usual
            self.band.update(slot, x, outside=outside, spread=change == 0)
        return score, band, flagged

    def _hour_change(self, slot: int, x: float, lift: float = 1.0) -> int:
        """-1 (or +1) when an hourly count is at least ``kpi_min_change`` below (above) its
        usual level for the hour, beyond Poisson doubt even at that distance (tail below
        ``kpi_hour_max_p``); 0 otherwise, or while the series is not armed."""
        p = self.params
        c = self.band.centre[slot]
        if (
            p.kpi_hour_sustain <= 0
            or c is None
            or c <= 0
            or self.seen <= p.kpi_warmup_buckets
            or self.band.seen[slot] < self.band.min_seen
        ):
            return 0
        change = p.kpi_min_change
        lo = (1 - change) * c * min(1.0, lift)  # a fall beyond the others' common fall
        if x <= lo and poisson_cdf(int(x), lo) < p.kpi_hour_max_p:
            return -1
        hi = (1 + change) * c * max(1.0, lift)  # a rise beyond the others' common rise
        if x >= hi and poisson_sf(int(x), hi) < p.kpi_hour_max_p:
            return 1
        return 0

    def early(
        self, t: int, count: int, minutes: int, prev: float | None = None
    ) -> tuple[float, float] | None:
        """Judge a partial bucket: ``count`` events in its first ``minutes`` minutes; returns
        the band it was judged against when it alerts (the direction follows from it).

        The band is for a whole bucket; its edges scaled to the minutes seen are the most
        (or the fewest) events a usual bucket would bring so far. A count alerts only when
        it is beyond that edge by so much that it would be very unlikely even there
        (Poisson tail below ``kpi_early_max_p``), and at least ``kpi_min_change`` away from
        usual. Judging against the edge rather than the centre keeps the band's own margin
        (the series' spread, its ramps within the hour), so only changes plain enough to be
        sure of from a few minutes alert early. The model does not learn here: it sees the
        whole bucket when that is complete.

        A fall is judged against the smallest level that is still no change worth a page:
        ``1 - kpi_min_change`` of the lower of the usual level and ``prev`` (the series'
        latest complete bucket, unless that was already outside the band), or the band's
        edge where that is higher. A wide band (a
        volatile series) then does not hide a collapse for the whole bucket, and a series
        already ramping down is compared with where it is now.
        """
        p = self.params
        if p.kpi_early_max_p <= 0 or self.seen <= p.kpi_warmup_buckets:
            return None
        band = self.band.band((t // 3_600_000) % 24, p.kpi_band_k, None)
        if band is None:
            return None
        lo, hi = band
        share = minutes * 60_000 / BUCKET_MS
        usual = (lo + hi) / 2 * share
        if count > hi * share and count >= (1 + p.kpi_min_change) * usual:
            return band if poisson_sf(count, hi * share) < p.kpi_early_max_p else None
        if count <= (1 - p.kpi_min_change) * usual:
            centre = (lo + hi) / 2
            # (not while the series is already outside its band: then ``prev`` is the
            # incident itself, and the usual level is what the incident is measured from)
            level = centre if prev is None or self.streak else min(centre, prev)
            floor = max(lo, (1 - p.kpi_min_change) * level) * share
            if count < floor:
                return band if poisson_cdf(count, floor) < p.kpi_early_max_p else None
        return None


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), for k above lam (a high count), in log space."""
    if lam <= 0:
        return 0.0 if k > 0 else 1.0
    if k <= lam:
        return 1.0
    # the terms fall from i = k on: sum them until they no longer matter
    log_term = -lam + k * math.log(lam) - math.lgamma(k + 1)
    total = 0.0
    i = k
    while True:
        term = math.exp(log_term)
        total += term
        i += 1
        log_term += math.log(lam / i)
        if term < total * 1e-12 or i > k + 10_000:
            return min(total, 1.0)


@dataclass
class _Bucket:
    scans: int = 0
    redemptions: int = 0
    orders: int = 0
    buyers: int = 0
    repeat_buyers: int = 0


class Detection:
    """Turns KPI-step output into alerts. Stateful, picklable, no I/O."""

    def __init__(
        self,
        params: DetectionParams | None = None,
        fraud: FraudParams | None = None,
        *,
        lang: str = "en",
    ) -> None:
        self.params = p = params or DetectionParams()
        self.lang = lang
        self.fraud = FraudDetectors(fraud, lang=lang)
        self.tracker = AlertTracker(quiet_ms=p.quiet_ms)
        self.region_hslr = HighScanLowRedemption(
            dev_k=p.hslr_dev_k, ratio_threshold=p.hslr_ratio, recover_ratio=p.hslr_recover_ratio
        )
        self.outlet_hslr = HighScanLowRedemption(
            window_buckets=p.outlet_window_buckets,
            min_expected=p.outlet_min_expected,
            sustain=p.outlet_sustain,
            max_p=p.outlet_max_p,
            fast_min_expected=p.outlet_fast_min_expected,
            dev_k=p.hslr_dev_k,
        )
        self.region_hslr_last: dict[str, int] = {}  # region|channel -> last bucket it fired
        self.series: dict[tuple[str, str, str], _SeriesMonitor] = {}
        self.recent: dict[tuple[str, str], deque[_Bucket]] = {}
        self.buckets: dict[int, dict[tuple[str, str], _Bucket]] = {}
        # region × channel -> first bucket with a row: a series starts there, so a key is
        # never judged for buckets before it existed, however far ahead rows have arrived
        self.keys: dict[tuple[str, str], int] = {}
        self.outlet_buckets: dict[int, dict[tuple[str, str, str], list[int]]] = {}
        self.outlets: dict[tuple[str, str, str], int] = {}  # outlet key -> last bucket seen
        self.next_bucket: int | None = None
        # per metric and key, the hour's count and usual level of the bucket being judged
        self.hour_totals: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
        # accepted events not judged yet, until the watermark passes them (see process):
        # one sorted run per batch, in a heap by (first event time, arrival number)
        self.pending: list[tuple[int, int, Run]] = []
        self.runs = 0  # runs ever held: the arrival number of the next one

    # -- entry point ---------------------------------------------------------------------

    def process(self, out: KpiOutput) -> list[Alert]:
        """Fraud detectors see an event as soon as the aggregator's watermark has passed it
        (``ts < out.watermark``), in event-time order (ties by event id). Nothing accepted
        later can be behind that watermark (the aggregator refuses such events as late), so
        every event is judged exactly once, in one global (ts, event_id) order: the same
        events give the same alerts however they were spread over partitions, batched or
        interleaved, and after a resume as in a run that never stopped. Each batch judges
        what the watermark moved past, so the work follows the stream instead of coming
        in one burst per minute. An alert's ``starts_at`` is the event time of its
        evidence, so the wait does not move it."""
        alerts: list[Alert] = []
        observe = self.tracker.observe_all
        if out.accepted:
            self._hold(out.accepted)
        wm = out.watermark
        pending = self.pending
        if wm is not None and pending and pending[0][0] < wm:
            self._judge_events(self._take_before(wm), alerts)
        closed = out.closed_through
        minute = None
        for row in out.rows:  # closed minutes, in time order, each with all its rows
            if row[0] != minute:
                if minute is not None:
                    self._early(minute, alerts)
                minute = row[0]
                # every minute before this one is closed: complete the buckets they end,
                # so an early look always sees the same history however minutes were batched
                for obs in self._complete_buckets(minute):
                    alerts.extend(observe(obs))
            self._add_row(row)
        if minute is not None:
            self._early(minute, alerts)
        if closed is not None and closed < 2**61:
            for obs in self._complete_buckets(closed):
                alerts.extend(observe(obs))
            alerts.extend(self.tracker.advance(closed))
        return alerts

    def _hold(self, accepted: list[tuple[AnyEvent, int]]) -> None:
        run = sorted(accepted, key=_ORDER)
        heapq.heappush(self.pending, (run[0][1], self.runs, run))
        self.runs += 1

    def _take_before(self, wm: int) -> Run:
        """Every pending event with ``ts < wm``, in (ts, event_id) order, ties by arrival."""
        pending = self.pending
        taken: list[tuple[int, Run]] = []
        while pending and pending[0][0] < wm:
            _, n, run = heapq.heappop(pending)
            i = bisect_left(run, wm, key=_TS)
            if i < len(run):
                rest = run[i:]
                heapq.heappush(pending, (rest[0][1], n, rest))
                run = run[:i]
            taken.append((n, run))
        if len(taken) == 1:
            return taken[0][1]
        taken.sort(key=_FIRST)  # by arrival, so that the stable sort breaks ties by arrival
        events = [e for _, run in taken for e in run]
        events.sort(key=_ORDER)  # merges the sorted runs
        return events

    def _judge_events(self, events: Run, alerts: list[Alert]) -> None:
        observe = self.tracker.observe_all
        update = self.fraud.update
        outlet_buckets = self.outlet_buckets
        for ev, t in events:
            for obs in update(ev, t):
                alerts.extend(observe(obs))
            cls = ev.__class__
            if (cls is Scan or cls is Redemption) and ev.outlet_id:  # type: ignore[union-attr]
                b = t - t % BUCKET_MS
                key = (ev.region, ev.channel, ev.outlet_id)  # type: ignore[union-attr]
                slot = outlet_buckets.setdefault(b, {}).get(key)
                if slot is None:
                    slot = outlet_buckets[b][key] = [0, 0]
                slot[0 if cls is Scan else 1] += 1

    # -- KPI buckets -----------------------------------------------------------------------

    def _add_row(self, row: KpiRow) -> None:
        minute, region, channel = row[0], row[1], row[2]
        b = minute - minute % BUCKET_MS
        key = (region, channel)
        since = self.keys.get(key)
        if since is None or b < since:
            self.keys[key] = b
        bucket = self.buckets.setdefault(b, {}).get(key)
        if bucket is None:
            bucket = self.buckets[b][key] = _Bucket()
        bucket.scans += row[3]
        bucket.redemptions += row[6]
        bucket.orders += row[7]
        bucket.buyers += row[9]
        bucket.repeat_buyers += row[10]
        if self.next_bucket is None or b < self.next_bucket:
            self.next_bucket = b

    def _early(self, minute: int, alerts: list[Alert]) -> None:
        """Early look at the counts of the bucket that ``minute`` (just closed) belongs to.

        Runs once per closed minute that had rows, so it sees the same partial counts
        however the minutes were batched."""
        b = minute - minute % BUCKET_MS
        minutes = (minute - b) // 60_000 + 1
        if minutes >= BUCKET_MS // 60_000:
            return  # the bucket is complete: the full judgement takes it
        per_key = self.buckets.get(b, {})
        t = minute + 60_000
        share = minutes * 60_000 / BUCKET_MS
        for key in sorted(k for k, since in self.keys.items() if since <= b):
            bucket = per_key.get(key)
            recent = self.recent.get(key)
            last = recent[-1] if recent else None
            verdict = self.region_hslr.peek(
                f"{key[0]}|{key[1]}",
                b,
                scans=bucket.scans if bucket is not None else 0,
                redemptions=bucket.redemptions if bucket is not None else 0,
                share=share,
            )
            if verdict is not None:
                obs = self._hslr_obs("region", key[0], key[0], key[1], b, verdict, t=t)
                obs.details["early"] = {"minutes": minutes}
                alerts.extend(self.tracker.observe_all(obs))
            for metric in ("scans", "orders"):
                mon = self.series.get((key[0], key[1], metric))
                if mon is None:
                    continue
                count = getattr(bucket, metric) if bucket is not None else 0
                prev = float(getattr(last, metric)) if last is not None else None
                band = mon.early(b, count, minutes, prev)
                if band is None:
                    continue
                projected = count * BUCKET_MS / (minutes * 60_000)
                obs = self._kpi_obs(key[0], key[1], metric, b, projected, band, 1.0, t=t)
                obs.details["early"] = {"minutes": minutes, "count": count}
                alerts.extend(self.tracker.observe_all(obs))

    def _complete_buckets(self, closed_through: int) -> list[Observation]:
        obs: list[Observation] = []
        if self.next_bucket is None:
            return obs
        b = self.next_bucket
        while b + BUCKET_MS <= closed_through:
            per_key = self.buckets.pop(b, {})
            keys = sorted(k for k, since in self.keys.items() if since <= b)
            self.hour_totals = self._hour_totals(keys, b, per_key)
            for key in keys:
                obs.extend(self._judge_key(key, b, per_key.get(key) or _Bucket()))
            outlets = self.outlet_buckets.pop(b, {})
            for okey in sorted(outlets):
                self.outlets[okey] = b
            for okey in sorted(self.outlets):
                scans, reds = outlets.get(okey, (0, 0))
                verdict = self.outlet_hslr.update("|".join(okey), b, scans=scans, redemptions=reds)
                # An outlet inside a region-wide incident is part of that incident, not its own,
                # also while the region's shortfall is building up but has not fired yet.
                region_key = f"{okey[0]}|{okey[1]}"
                last = self.region_hslr_last.get(region_key)
                window = self.outlet_hslr.window_buckets * BUCKET_MS
                if (
                    verdict is not None
                    and (last is None or b - last > window)
                    and not self.region_hslr.looks_low(region_key)
                ):
                    obs.append(self._hslr_obs("outlet", okey[2], okey[0], okey[1], b, verdict))
            stale = [k for k, last in self.outlets.items() if b - last > 2 * 86_400_000]
            for k in stale:
                del self.outlets[k]
            b += BUCKET_MS
        self.next_bucket = b
        # outlet counts for buckets that closed with no KPI row at all
        for old in [k for k in self.outlet_buckets if k < b]:
            del self.outlet_buckets[old]
        return obs

    def _hour_totals(
        self, keys: list[tuple[str, str]], b: int, per_key: dict[tuple[str, str], _Bucket]
    ) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
        """Per hourly count metric and key: the hour's count up to bucket ``b`` and its usual
        level, for every key whose hour is complete and has a usual level; the sustained
        hour judges a key against the lift of all the others (see ``_SeriesMonitor.step``)."""
        slot = (b // 3_600_000) % 24
        out: dict[str, dict[tuple[str, str], tuple[float, float]]] = {"scans": {}, "orders": {}}
        for key in keys:
            recent = self.recent.get(key)
            if recent is None or len(recent) < HOUR_BUCKETS - 1:
                continue
            earlier = list(recent)[-(HOUR_BUCKETS - 1) :]
            now = per_key.get(key)
            for metric in ("scans", "orders"):
                mon = self.series.get((key[0], key[1], metric + "@1h"))
                c = mon.band.centre[slot] if mon is not None else None
                if c is None or c <= 0:
                    continue
                x = sum(getattr(r, metric) for r in earlier) + (getattr(now, metric) if now else 0)
                out[metric][key] = (float(x), c)
        return out

    def _lift(self, metric: str, key: tuple[str, str]) -> float:
        """How far the other keys' hourly counts of ``metric`` are from their usual levels
        together (1: as usual), leaving ``key`` out so its own change does not hide it."""
        totals = self.hour_totals.get(metric, {})
        x_all = sum(x for x, _ in totals.values())
        c_all = sum(c for _, c in totals.values())
        x_k, c_k = totals.get(key, (0.0, 0.0))
        others = c_all - c_k
        return (x_all - x_k) / others if others > 0 else 1.0

    def _judge_key(self, key: tuple[str, str], b: int, bucket: _Bucket) -> list[Observation]:
        region, channel = key
        obs: list[Observation] = []
        recent = self.recent.get(key)
        if recent is None:
            recent = self.recent[key] = deque(maxlen=HOUR_BUCKETS)
        recent.append(bucket)
        # Rates over the trailing hour: redemptions trail scans, so a 10-minute rate swings
        # with the rhythm of the day (well over 100 % at night) and says nothing.
        h_scans = sum(r.scans for r in recent)
        h_reds = sum(r.redemptions for r in recent)
        h_buyers = sum(r.buyers for r in recent)
        h_repeat = sum(r.repeat_buyers for r in recent)
        full = len(recent) == HOUR_BUCKETS
        min_n = self.params.kpi_rate_min_denominator
        values: dict[str, float | None] = {
            "scans": float(bucket.scans),
            "orders": float(bucket.orders),
            "redemption_rate": h_reds / h_scans if full and h_scans >= min_n else None,
            "repurchase_rate": h_repeat / h_buyers if full and h_buyers >= min_n else None,
        }
        denominators = {"redemption_rate": h_scans, "repurchase_rate": h_buyers}
        rise_after_days = {
            "repurchase_rate": self.params.kpi_repurchase_rise_after_days,
            "redemption_rate": self.params.kpi_redemption_rise_after_days,
        }
        slot = (b // 3_600_000) % 24
        usual_now: dict[str, float | None] = {}
        for metric in METRICS:
            x = values[metric]
            if x is None:
                continue
            mon = self.series.get((region, channel, metric))
            if mon is None:
                mon = self.series[(region, channel, metric)] = _SeriesMonitor(self.params)
            usual_now[metric] = mon.band.centre[slot]
            count = not metric.endswith("_rate")
            score, band, flagged = mon.step(
                b,
                x,
                denominators.get(metric),
                sustained=count,
                prev=float(getattr(recent[-2], metric)) if count and len(recent) > 1 else None,
                whole=count,
            )
            if metric == "redemption_rate" and band is not None and x < band[0]:
                # Redemptions falling behind scans is 高扫码低核销 by definition: its detector
                # judges it against the learned delay and reports it once, as that kind (and
                # when scans fall too, the scans series reports "everything down").
                flagged = False
            rise_after = rise_after_days.get(metric)
            if (
                rise_after is not None
                and band is not None
                and x > band[1]
                and b - self.keys[key] < rise_after * 86_400_000
            ):
                flagged = False  # the history behind the rate is still filling up (params)
            if flagged and band is not None:
                window = 60 if metric.endswith("_rate") else BUCKET_MS // 60_000
                obs.append(self._kpi_obs(region, channel, metric, b, x, band, score, window))
        # Counts also over the last hour: a sustained drop in a small series is invisible in
        # one noisy 10-minute bucket but plain in six.
        if full:
            for metric, x, now in (
                ("scans", h_scans, bucket.scans),
                ("orders", sum(r.orders for r in recent), bucket.orders),
            ):
                mon = self.series.get((region, channel, metric + "@1h"))
                if mon is None:
                    mon = self.series[(region, channel, metric + "@1h")] = _SeriesMonitor(
                        self.params
                    )
                score, band, flagged = mon.step(
                    b,
                    float(x),
                    latest=(float(now), usual_now.get(metric)),
                    lift=self._lift(metric, key),
                )
                if flagged and band is not None:
                    obs.append(self._kpi_obs(region, channel, metric, b, float(x), band, score, 60))
        verdict = self.region_hslr.update(
            f"{region}|{channel}", b, scans=bucket.scans, redemptions=bucket.redemptions
        )
        if verdict is not None:
            self.region_hslr_last[f"{region}|{channel}"] = b
            obs.append(self._hslr_obs("region", region, region, channel, b, verdict))
        return obs

    # -- observations ----------------------------------------------------------------------

    def _kpi_obs(
        self,
        region: str,
        channel: str,
        metric: str,
        b: int,
        x: float,
        band: tuple[float, float],
        score: float,
        window_min: int = BUCKET_MS // 60_000,
        *,
        t: int | None = None,
    ) -> Observation:
        direction = "up" if x > band[1] else "down"
        lo, hi = max(band[0], 0.0), band[1]
        rate = metric.endswith("_rate")

        def fmt(v: float) -> str:
            return f"{v:.1%}" if rate else f"{v:,.0f}"

        names = {
            "en": {
                "scans": "Scans",
                "orders": "Orders",
                "redemption_rate": "Redemption rate",
                "repurchase_rate": "Repurchase rate",
            },
            "zh-CN": {
                "scans": "扫码量",
                "orders": "订单量",
                "redemption_rate": "核销率",
                "repurchase_rate": "复购率",
            },
        }
        if self.lang == "zh-CN":
            verb = "升至" if direction == "up" else "降至"
            cmp = "高于" if direction == "up" else "低于"
            unit = "" if rate else f"（每{window_min}分钟）"
            summary = (
                f"{region}/{channel} 的{names['zh-CN'][metric]}{verb} {fmt(x)}{unit}，"
                f"{cmp}该时段通常的 {fmt(lo)}–{fmt(hi)}。"
            )
        else:
            verb = "rose to" if direction == "up" else "fell to"
            unit = "" if rate else f" per {window_min} minutes"
            summary = (
                f"{names['en'][metric]} in {region}/{channel} {verb} {fmt(x)}{unit}, "
                f"{'above' if direction == 'up' else 'below'} the usual {fmt(lo)}–{fmt(hi)} "
                "for this time of day."
            )
        far = (x - hi) if direction == "up" else (lo - x)
        width = max(hi - lo, 1e-9)
        details: dict[str, Any] = {
            "metric": metric,
            "direction": direction,
            "observed": x,
            "band": [lo, hi],
            "bucket_start": ms_to_iso(b),
            "window_minutes": window_min,
            "score": round(score, 4),
        }
        return Observation(
            kind="kpi_anomaly",
            entity_type="region",
            entity_id=region,
            t=b + BUCKET_MS if t is None else t,
            region=region,
            channel=channel,
            severity="critical" if far >= width else "warning",
            value=x,
            baseline=(lo + hi) / 2,
            summary=summary,
            details=details,
        )

    def _hslr_obs(
        self,
        etype: str,
        entity: str,
        region: str,
        channel: str,
        b: int,
        v: HslrVerdict,
        *,
        t: int | None = None,
    ) -> Observation:
        pct = v.ratio
        hours = (self.outlet_hslr if etype == "outlet" else self.region_hslr).window_buckets / 6
        where = (
            f"Outlet {entity} ({region}/{channel})" if etype == "outlet" else f"{region}/{channel}"
        )
        if self.lang == "zh-CN":
            where_zh = f"门店 {entity}（{region}/{channel}）" if etype == "outlet" else where
            summary = (
                f"{where_zh}：近{hours:g}小时扫码 {v.scans} 次（通常约 {v.usual_scans:.0f}），"
                f"但核销仅 {v.redemptions} 次，预期约 {v.expected:.0f} 次（{pct:.0%}），"
                "请检查门店执行、奖励是否失效或机器刷码。"
            )
        else:
            summary = (
                f"{where}: {v.scans} scans in the last {hours:g} h (usual about "
                f"{v.usual_scans:.0f}) but only {v.redemptions} redemptions against about "
                f"{v.expected:.0f} expected ({pct:.0%}): check store execution, the reward, "
                "or bot scans."
            )
        return Observation(
            kind="high_scan_low_redemption",
            entity_type=etype,
            entity_id=entity,
            t=b + BUCKET_MS if t is None else t,
            region=region,
            channel=channel,
            severity="critical" if pct < 0.2 else "warning",
            value=float(v.redemptions),
            baseline=round(v.expected, 3),
            summary=summary,
            details={
                "scans": v.scans,
                "usual_scans": round(v.usual_scans, 3),
                "redemptions": v.redemptions,
                "expected_redemptions": round(v.expected, 3),
                "redeemed_share_of_expected": round(pct, 4),
                "window_hours": hours,
                "bucket_start": ms_to_iso(b),
                "scans_vs_usual": round(v.scans / v.usual_scans, 3)
                if v.usual_scans and not math.isnan(v.usual_scans)
                else None,
            },
        )

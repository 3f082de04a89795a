"""Exact per-minute KPIs per (region, channel) from batches of tagged events.

One aggregator sees every partition's batches, so it knows the slowest
partition's watermark and closes a minute only when no partition can still
deliver an on-time event for it. That makes each emitted row final: no
partial rows, no corrections, and repeat-buyer history can be a single
"last order minute" per user because minutes close in time order.

Memory is bounded by event-time expiry: dedup ids live for the dedup horizon
past the watermark (with a hard cap), open windows only until the watermark
passes them, and per-user order history for the repeat-buyer lookback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from koxpulse.batches import DecodedBatch, LateEvent
from koxpulse.events import AnyEvent, Order, Redemption, Scan
from koxpulse.timeutil import DAY_MS, MINUTE_MS

KpiRow = tuple[
    int, str, str, int, int, int, int, int, float, int, int, float | None, float | None, int
]
"""(window_start_ms, region, channel, scans, unique_codes, scanners, redemptions, orders,
revenue, buyers, repeat_buyers, redemption_rate, repurchase_rate, version)"""

KPI_COLUMNS = (
    "window_start",
    "region",
    "channel",
    "scans",
    "unique_codes",
    "scanners",
    "redemptions",
    "orders",
    "revenue",
    "buyers",
    "repeat_buyers",
    "redemption_rate",
    "repurchase_rate",
    "version",
)


class Window:
    """Counters and distinct sets of one (minute, region, channel)."""

    __slots__ = ("buyers", "codes", "orders", "redemptions", "revenue", "scanners", "scans")

    def __init__(self) -> None:
        self.scans = 0
        self.codes: set[str] = set()
        self.scanners: set[str] = set()
        self.redemptions = 0
        self.orders = 0
        self.revenue = 0.0
        self.buyers: set[str] = set()


@dataclass(slots=True)
class KpiOutput:
    """What one batch (or the final flush) produced."""

    rows: list[KpiRow] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    accepted: list[tuple[AnyEvent, int]] = field(default_factory=list)
    ok: int = 0
    duplicates: int = 0
    closed_through: int | None = None  # every minute before this is final

    @property
    def late_count(self) -> int:
        return len(self.late)


@dataclass
class KpiAggregator:
    """Dedup, lateness-by-window and 1-minute tumbling KPIs over all partitions.

    >>> agg = KpiAggregator(expected_partitions={"f"})
    >>> from koxpulse.events import Scan
    >>> ev = Scan(event_id="e1", ts=60_000, region="CN-SD", channel="offline",
    ...           code_id="c1", user_id="u1")
    >>> b = DecodedBatch("f", "f", "", 0, [ev, ev], [60_000, 60_000], [1, 2], 2, eof=True)
    >>> out = agg.process(b)
    >>> out.duplicates, [r[:6] for r in out.rows]
    (1, [(60000, 'CN-SD', 'offline', 1, 1, 1)])
    """

    allowed_lateness_ms: int = 60_000
    dedup_horizon_ms: int = 15 * MINUTE_MS
    dedup_max_ids: int = 2_000_000
    repeat_lookback_ms: int = 90 * DAY_MS
    expected_partitions: Iterable[str] = ()
    keep_accepted: bool = False
    version_clock: Callable[[], int] = time.time_ns

    def __post_init__(self) -> None:
        self.expected: set[str] = set(self.expected_partitions)
        self.watermarks: dict[str, int | None] = {}
        self.finished: set[str] = set()
        self.windows: dict[int, dict[tuple[str, str], Window]] = {}
        self.closed_before: int | None = None
        self.seen: set[str] = set()
        self.seen_buckets: dict[int, list[str]] = {}
        self.last_order: dict[str, int] = {}
        self.dedup_evictions = 0
        self._version = 0
        self._last_purge = 0

    # -- public -----------------------------------------------------------------------

    def process(self, batch: DecodedBatch) -> KpiOutput:
        """Count a batch, then close every window the new watermark allows."""
        out = KpiOutput()
        self._count(batch, out)
        part = batch.partition
        if batch.watermark is not None or part not in self.watermarks:
            self.watermarks[part] = batch.watermark
        if batch.eof:
            self.finished.add(part)
        self._close_until(self._global_watermark(), out)
        return out

    def flush(self) -> KpiOutput:
        """Close every open window: the end of all input."""
        out = KpiOutput()
        self._close_until(None, out, everything=True)
        return out

    @property
    def open_windows(self) -> int:
        return sum(len(w) for w in self.windows.values())

    # -- counting ---------------------------------------------------------------------

    def _count(self, batch: DecodedBatch, out: KpiOutput) -> None:
        seen = self.seen
        buckets = self.seen_buckets
        windows = self.windows
        closed_before = self.closed_before if self.closed_before is not None else -(2**62)
        late_idx = set(batch.late) if batch.late else ()
        keep = self.keep_accepted
        accepted = out.accepted
        ok = dups = 0
        events = batch.events
        stamps = batch.ts
        cur_minute = None
        cur_bucket: list[str] = []
        cur_windows: dict[tuple[str, str], Window] = {}
        for i in range(len(events)):
            ev = events[i]
            eid = ev.event_id
            if eid in seen:
                dups += 1
                continue
            seen.add(eid)
            t = stamps[i]
            minute = t - t % MINUTE_MS
            if minute != cur_minute:
                cur_minute = minute
                cur_bucket = buckets.get(minute) or buckets.setdefault(minute, [])
                cur_windows = windows.get(minute) or windows.setdefault(minute, {})
            cur_bucket.append(eid)
            if (late_idx and i in late_idx) or minute < closed_before:
                out.late.append(self._late(batch, i))
                continue
            key = (ev.region, ev.channel)
            w = cur_windows.get(key)
            if w is None:
                w = cur_windows[key] = Window()
            cls = ev.__class__
            if cls is Scan:
                w.scans += 1
                w.codes.add(ev.code_id)  # type: ignore[union-attr]
                w.scanners.add(ev.user_id)  # type: ignore[union-attr]
            elif cls is Redemption:
                w.redemptions += 1
            elif cls is Order:
                w.orders += 1
                w.revenue += ev.amount  # type: ignore[union-attr,operator]
                w.buyers.add(ev.user_id)  # type: ignore[union-attr]
            ok += 1
            if keep:
                accepted.append((ev, t))
        # A minute that only received late events must not leave an empty window behind.
        for minute in {stamps[i] - stamps[i] % MINUTE_MS for i in late_idx} if late_idx else ():
            if minute in windows and not windows[minute]:
                del windows[minute]
        if closed_before > -(2**62):
            for minute in [m for m in windows if m < closed_before]:
                del windows[minute]
        out.ok += ok
        out.duplicates += dups

    @staticmethod
    def _late(batch: DecodedBatch, i: int) -> LateEvent:
        ev = batch.events[i]
        return LateEvent(
            received_at_ms=batch.received_at_ms,
            ts=batch.ts[i],
            type=ev.__class__.__name__.lower(),
            region=ev.region,
            channel=ev.channel,
            event_id=ev.event_id,
            source=batch.source,
            position=f"{batch.position_prefix}{batch.positions[i]}",
        )

    # -- watermark and closing ---------------------------------------------------------

    def _global_watermark(self) -> int | None:
        """Slowest watermark over partitions still reading; None while one is unknown."""
        active = [p for p in self.watermarks if p not in self.finished]
        if any(p not in self.watermarks and p not in self.finished for p in self.expected):
            return None
        if not active:
            return None if not self.finished else _INFINITY
        marks = [self.watermarks[p] for p in active]
        if any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None)

    def _close_until(self, wm: int | None, out: KpiOutput, *, everything: bool = False) -> None:
        if wm is None and not everything:
            return
        limit = _INFINITY if everything or wm is None else wm
        for minute in sorted(m for m in self.windows if m + MINUTE_MS <= limit):
            self._emit_minute(minute, self.windows.pop(minute), out)
            if self.closed_before is None or minute + MINUTE_MS > self.closed_before:
                self.closed_before = minute + MINUTE_MS
        if not everything and wm is not None and wm != _INFINITY:
            frontier = wm - wm % MINUTE_MS
            if self.closed_before is None or frontier > self.closed_before:
                self.closed_before = frontier
        out.closed_through = self.closed_before
        if wm is not None and wm != _INFINITY:
            self._expire(wm)

    def _emit_minute(
        self, minute: int, keys: dict[tuple[str, str], Window], out: KpiOutput
    ) -> None:
        last_order = self.last_order
        since = minute - self.repeat_lookback_ms
        now = self.version_clock()
        version = self._version = max(self._version + 1, now)
        for (region, channel), w in sorted(keys.items()):
            repeat = 0
            for user in w.buyers:
                prev = last_order.get(user)
                if prev is not None and prev >= since:
                    repeat += 1
            buyers = len(w.buyers)
            out.rows.append(
                (
                    minute,
                    region,
                    channel,
                    w.scans,
                    len(w.codes),
                    len(w.scanners),
                    w.redemptions,
                    w.orders,
                    round(w.revenue, 6),
                    buyers,
                    repeat,
                    w.redemptions / w.scans if w.scans else None,
                    repeat / buyers if buyers else None,
                    version,
                )
            )
        # Only after every key of this minute: orders in the same minute are not "before".
        for w in keys.values():
            for user in w.buyers:
                last_order[user] = minute

    def _expire(self, wm: int) -> None:
        # The slowest partition's newest event time is wm + lateness: an id older than
        # that by more than the horizon can no longer be "seen again within the horizon".
        cutoff = wm + self.allowed_lateness_ms - self.dedup_horizon_ms
        buckets = self.seen_buckets
        seen = self.seen
        for minute in [m for m in buckets if m + MINUTE_MS <= cutoff]:
            seen.difference_update(buckets.pop(minute))
        if len(seen) > self.dedup_max_ids:
            for minute in sorted(buckets):
                ids = buckets.pop(minute)
                seen.difference_update(ids)
                self.dedup_evictions += len(ids)
                if len(seen) <= self.dedup_max_ids:
                    break
        if self.closed_before is not None and self.closed_before - self._last_purge >= DAY_MS:
            self._last_purge = self.closed_before
            horizon = self.closed_before - self.repeat_lookback_ms
            stale = [u for u, m in self.last_order.items() if m < horizon]
            for user in stale:
                del self.last_order[user]


_INFINITY = 2**62

"""Exact per-minute KPIs per (region, channel) from batches of tagged events.

One aggregator sees every partition's batches, so it knows the slowest
partition's watermark and closes a minute only when no partition can still
deliver an on-time event for it. That makes each emitted row final: no
partial rows, no corrections, and repeat-buyer history can be a single
"last order minute" per user because minutes close in time order.

The counting is batch-columnar: per batch and minute, C-level builtins
(``map`` with ``attrgetter``, ``zip``, ``Counter.update``, ``set.update``)
do the per-event work, because a Python loop over events would cost more than
decoding them.

Memory is bounded by event-time expiry: dedup ids live for the dedup horizon
past the slowest partition's newest event (with a hard cap), open minutes only
until the watermark passes them, and per-user order history for the
repeat-buyer lookback (in compact rows: it holds every buyer of the last 90 days).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, is_, itemgetter
from typing import Any

import numpy as np

from detectors.compact import STR, CompactTable, key_of
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

Key = tuple[str, str]  # (region, channel)

_ID = attrgetter("event_id")
_REGION_CHANNEL = attrgetter("region", "channel")
_CLASS = attrgetter("__class__")
_CODE = attrgetter("code_id")
_USER = attrgetter("user_id")
_AMOUNT = attrgetter("amount")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_INFINITY = 2**62
_NEVER = -(2**62)  # "no earlier order" for the repeat-buyer comparison
RELEASE_PER_BATCH = 20_000  # entries of closed minutes' sets freed per batch at least
LAZY_DISTINCT = 50_000  # entries past which a minute keeps its distinct counts up as it goes


def _count_types(into: dict[str, int], classes: Iterable[type]) -> None:
    """Events per type name from their classes, one C-level pass (for the metrics by type)."""
    for cls, n in Counter(classes).items():
        name = _TYPE_NAMES.get(cls) or cls.__name__.lower()
        into[name] = into.get(name, 0) + n


_TYPE_NAMES: dict[type, str] = {Scan: "scan", Redemption: "redemption", Order: "order"}


def _add_distinct(
    seen: set[tuple[int, str]], counts: Counter[int] | None, pairs: Iterable[tuple[int, str]]
) -> Counter[int] | None:
    """Add (key, value) pairs to ``seen``; returns the distinct count per key, or None while
    that is still cheap to work out when the minute closes.

    A busy minute holds millions of pairs, and one counting pass over them then stalls the
    stream for most of a second: past ``LAZY_DISTINCT`` the count is kept up as pairs come
    (new pairs only, found from the small side). Small minutes (a replay's) keep the
    cheaper plain update.
    """
    if counts is None:
        seen.update(pairs)
        return Counter(map(_FIRST, seen)) if len(seen) >= LAZY_DISTINCT else None
    new = set(pairs).difference(seen)
    if new:
        seen.update(new)
        counts.update(map(_FIRST, new))
    return counts


def _distinct(seen: set[tuple[int, str]], counts: Counter[int] | None) -> Counter[int]:
    return Counter(map(_FIRST, seen)) if counts is None else counts


class Minute:
    """Everything counted for one minute, by (region, channel) key id."""

    __slots__ = (
        "buyers",
        "codes",
        "keys",
        "n_buyers",
        "n_codes",
        "n_scanners",
        "orders",
        "redemptions",
        "revenue",
        "scanners",
        "scans",
    )

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self.scans: Counter[int] = Counter()
        self.redemptions: Counter[int] = Counter()
        self.orders: Counter[int] = Counter()
        self.revenue: dict[int, float] = {}
        self.codes: set[tuple[int, str]] = set()
        self.scanners: set[tuple[int, str]] = set()
        self.buyers: set[tuple[int, str]] = set()
        # distinct counts per key once the sets are big (see _add_distinct)
        self.n_codes: Counter[int] | None = None
        self.n_scanners: Counter[int] | None = None
        self.n_buyers: Counter[int] | None = None

    def add(self, events: list[AnyEvent], classes: list[type], keys: list[int]) -> None:
        """Count events of this minute; ``classes`` and ``keys`` are each event's class and
        (region, channel) key id, worked out once per batch by the aggregator."""
        self.keys.update(keys)
        is_scan = list(map(is_, classes, repeat(Scan)))
        if True in is_scan:
            scans = list(compress(events, is_scan))
            skeys = list(compress(keys, is_scan))
            self.scans.update(skeys)
            self.n_codes = _add_distinct(
                self.codes, self.n_codes, zip(skeys, map(_CODE, scans), strict=True)
            )
            self.n_scanners = _add_distinct(
                self.scanners, self.n_scanners, zip(skeys, map(_USER, scans), strict=True)
            )
            if len(scans) == len(events):
                return
        is_red = list(map(is_, classes, repeat(Redemption)))
        if True in is_red:
            self.redemptions.update(compress(keys, is_red))
        is_order = list(map(is_, classes, repeat(Order)))
        if True in is_order:
            orders = list(compress(events, is_order))
            okeys = list(compress(keys, is_order))
            self.orders.update(okeys)
            self.n_buyers = _add_distinct(
                self.buyers, self.n_buyers, zip(okeys, map(_USER, orders), strict=True)
            )
            revenue = self.revenue
            for key, amount in zip(okeys, map(_AMOUNT, orders), strict=True):
                revenue[key] = revenue.get(key, 0.0) + amount


class LastOrders:
    """user -> minute of the user's last order (epoch ms), exactly, in compact rows.

    The repeat-buyer history holds every buyer of the lookback (90 days), so it is a
    :class:`~detectors.compact.CompactTable` (a buyer costs about 40 bytes instead of a
    dict slot and a string object, over 100) found by a 64-bit hash of the user id, with
    the id itself stored and compared: a different user whose hash is already taken (1
    in 10 million with a million buyers) is kept in a small dict, so answers are exact.

    >>> history = LastOrders()
    >>> history.set("U1", 60_000); history.set("U1", 120_000)
    >>> history.get("U1", -1), history.get("U2", -1), len(history)
    (120000, -1, 1)
    >>> history.purge(100_000), history.purge(200_000), len(history)
    (0, 1, 0)
    """

    def __init__(self) -> None:
        self._table = CompactTable((("user", STR), ("minute", "i8")))
        self._clash: dict[str, int] = {}  # users whose hash another user holds

    def __len__(self) -> int:
        return self._table.size + len(self._clash)

    def get(self, user: str, default: int) -> int:
        if self._clash:
            m = self._clash.get(user)
            if m is not None:
                return m
        table = self._table
        r = table.find(key_of(user))
        if r >= 0 and table.strs[0].eq(r, user):
            return table.views[1][r]  # type: ignore[no-any-return]
        return default

    def set(self, user: str, minute: int) -> None:
        if self._clash and user in self._clash:
            self._clash[user] = minute
            return
        table = self._table
        r = table.upsert(user)
        if r < 0:
            r = ~r
            table.strs[0].set(r, user)
        elif not table.strs[0].eq(r, user):
            self._clash[user] = minute
            return
        table.views[1][r] = minute

    def purge(self, horizon: int) -> int:
        """Forget orders before ``horizon``; returns how many users were forgotten."""
        table = self._table
        before = len(self)
        table.remove_where(table.live_mask() & (table.column(1) < horizon))
        self._clash = {u: m for u, m in self._clash.items() if m >= horizon}
        return before - len(self)


@dataclass(slots=True)
class KpiOutput:
    """What one batch (or the final flush) produced."""

    rows: list[KpiRow] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    # the accepted events of the batch and their times (epoch ms), in batch order
    accepted_events: list[AnyEvent] = field(default_factory=list)
    accepted_ts: list[int] = field(default_factory=list)
    ok: int = 0
    duplicates: int = 0
    closed_through: int | None = None  # every minute before this is final
    # Every event before this time (epoch ms) has been accepted or refused: no later batch
    # brings an accepted event with ``ts < watermark``. Event-granular, never behind
    # ``closed_through``, never decreasing; None until every partition has a watermark.
    watermark: int | None = None
    ok_by_type: dict[str, int] = field(default_factory=dict)
    duplicates_by_type: dict[str, int] = field(default_factory=dict)
    received_at_ms: int | None = None  # when the batch behind this output was read
    _pairs: list[tuple[AnyEvent, int]] | None = field(default=None, repr=False, compare=False)

    @property
    def accepted(self) -> list[tuple[AnyEvent, int]]:
        """The accepted events as ``(event, ts)`` pairs (what detection takes), made when
        first asked for: the events table takes the two lists as they are."""
        if self._pairs is None:
            self._pairs = list(zip(self.accepted_events, self.accepted_ts, strict=True))
        return self._pairs


@dataclass
class KpiAggregator:
    """Dedup, lateness-by-window and 1-minute tumbling KPIs over all partitions.

    >>> import numpy as np
    >>> agg = KpiAggregator(expected_partitions={"f"})
    >>> from koxpulse.events import Scan
    >>> ev = Scan(event_id="e1", ts=60_000, region="CN-SD", channel="offline",
    ...           code_id="c1", user_id="u1")
    >>> b = DecodedBatch("f", "f", "", 0, [ev, ev], np.array([60_000, 60_000]), [1, 2], 2,
    ...                  eof=True)
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
        self.idle: set[str] = set()  # partitions that said they are idle: not waited for
        self.minutes: dict[int, Minute] = {}
        self.key_ids: dict[Key, int] = {}
        self.key_names: list[Key] = []
        self.closed_before: int | None = None
        # the published watermark (KpiOutput.watermark): an event behind it is late
        self.frontier: int | None = None
        self.seen: set[str] = set()
        # ids by the newest event time of the batch that brought them, for expiry
        self.seen_batches: list[tuple[int, list[str]]] = []
        self.last_order = LastOrders()
        self.dedup_evictions = 0
        self._version = 0
        self._last_purge = 0
        self._junk: list[set[tuple[int, str]]] = []  # closed minutes' sets, being released

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_junk"] = []  # garbage: not part of a snapshot
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- public -----------------------------------------------------------------------

    def process(self, batch: DecodedBatch) -> KpiOutput:
        """Count a batch, then close every window the new watermark allows."""
        out = KpiOutput(received_at_ms=batch.received_at_ms)
        if batch.events:
            self._count(batch, out)
        part = batch.partition
        if batch.watermark is not None or part not in self.watermarks:
            self.watermarks[part] = batch.watermark
        if batch.idle:
            self.idle.add(part)
        elif batch.events:
            self.idle.discard(part)
        if batch.eof:
            self.finished.add(part)
        self._close_until(self._global_watermark(), out)
        if self._junk:
            self._release()
        return out

    def flush(self) -> KpiOutput:
        """Close every open window: the end of all input."""
        out = KpiOutput()
        self._close_until(None, out, everything=True)
        self._junk.clear()
        return out

    @property
    def open_windows(self) -> int:
        return sum(len(m.keys) for m in self.minutes.values())

    # -- counting ---------------------------------------------------------------------

    def _count(self, batch: DecodedBatch, out: KpiOutput) -> None:
        events = batch.events
        ts = batch.ts
        n = len(events)
        ids = list(map(_ID, events))
        seen = self.seen
        repeated = list(map(seen.__contains__, ids))
        had = len(seen)
        seen.update(ids)
        drop: set[int] = set()
        if True in repeated:
            drop.update(compress(range(n), repeated))
        if len(seen) - had != n - len(drop):
            # the same id twice in this batch: keep the first
            first_at = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))
            drop.update(set(range(n)).difference(first_at.values()))
        classes = list(map(_CLASS, events))
        dups = len(drop)
        if dups:
            _count_types(out.duplicates_by_type, [classes[i] for i in drop])
        self.seen_batches.append((int(ts.max()), ids))

        minutes = ts - ts % MINUTE_MS
        late = set(batch.late) - drop if batch.late else set()
        if self.frontier is not None:
            # Behind the published watermark: only possible for a partition that was not
            # waited for (idle, or not yet heard from); see _global_watermark.
            too_old = np.flatnonzero(ts < self.frontier).tolist()
            if too_old:
                late.update(i for i in too_old if i not in drop)
        for i in sorted(late):
            out.late.append(self._late(batch, i))
        drop |= late

        if drop:
            mask = np.ones(n, dtype=bool)
            mask[list(drop)] = False
            keep = mask.tolist()
            events = list(compress(events, keep))
            classes = list(compress(classes, keep))
            minutes = minutes[mask]
            ts = ts[mask]
        if not events:
            out.duplicates += dups
            return
        keys = self._key_ids(events)
        first, last = int(minutes.min()), int(minutes.max())
        if first == last:
            self._minute(first).add(events, classes, keys)
        else:
            for m in np.unique(minutes).tolist():
                sel = (minutes == m).tolist()
                self._minute(m).add(
                    list(compress(events, sel)),
                    list(compress(classes, sel)),
                    list(compress(keys, sel)),
                )
        out.ok += len(events)
        _count_types(out.ok_by_type, classes)
        out.duplicates += dups
        if self.keep_accepted:
            out.accepted_events = events
            out.accepted_ts = ts.tolist()

    def _release(self) -> None:
        """Free a slice of the closed minutes' sets: dropping a busy minute's sets at once
        (millions of entries) would stall the stream for most of a second."""
        junk = self._junk
        # at least a fixed slice, more when closed minutes pile up faster than batches come
        budget = max(RELEASE_PER_BATCH, sum(map(len, junk)) // 32)
        while junk and budget > 0:
            entries = junk[-1]
            n = min(budget, len(entries))
            pop = entries.pop
            for _ in repeat(None, n):
                pop()
            budget -= n
            if not entries:
                junk.pop()

    def _key_ids(self, events: list[AnyEvent]) -> list[int]:
        """Small integer ids for (region, channel): cheaper to hash in every set and counter."""
        ids = self.key_ids
        keys = list(map(ids.get, map(_REGION_CHANNEL, events)))
        if None in keys:  # a (region, channel) never seen before
            for pair in set(map(_REGION_CHANNEL, events)).difference(ids):
                ids[pair] = len(self.key_names)
                self.key_names.append(pair)
            keys = list(map(ids.__getitem__, map(_REGION_CHANNEL, events)))
        return keys  # type: ignore[return-value]

    def _minute(self, m: int) -> Minute:
        state = self.minutes.get(m)
        if state is None:
            state = self.minutes[m] = Minute()
        return state

    @staticmethod
    def _late(batch: DecodedBatch, i: int) -> LateEvent:
        ev = batch.events[i]
        return LateEvent(
            received_at_ms=batch.received_at_ms,
            ts=int(batch.ts[i]),
            type=ev.__class__.__name__.lower(),
            region=ev.region,
            channel=ev.channel,
            event_id=ev.event_id,
            source=batch.source,
            position=f"{batch.position_prefix}{batch.positions[i]}",
        )

    # -- watermark and closing ---------------------------------------------------------

    def _global_watermark(self) -> int | None:
        """Slowest watermark over partitions still reading; None while one is unknown.

        An idle partition is not waited for: its silence must not hold other partitions'
        windows open. If it wakes up with events behind the watermark already published
        (``KpiOutput.watermark``), they count as late: detection has judged up to there.
        A partition that is waited for can never deliver such an event, since its own
        lateness rule refuses anything behind its watermark, which is at or past this one.
        """
        done = self.finished | self.idle
        if any(p not in self.watermarks and p not in done for p in self.expected):
            return None
        active = [p for p in self.watermarks if p not in done]
        if not active and self.idle - self.finished:
            # every partition is silent: time has moved on, close what their data allows
            marks = [self.watermarks.get(p) for p in self.idle - self.finished]
            known = [m for m in marks if m is not None]
            return max(known) if known else None
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
        for minute in sorted(m for m in self.minutes if m + MINUTE_MS <= limit):
            self._emit_minute(minute, self.minutes.pop(minute), out)
            if self.closed_before is None or minute + MINUTE_MS > self.closed_before:
                self.closed_before = minute + MINUTE_MS
        if not everything and wm is not None and wm != _INFINITY:
            frontier = wm - wm % MINUTE_MS
            if self.closed_before is None or frontier > self.closed_before:
                self.closed_before = frontier
        if everything or wm is not None:
            # The global watermark can step back when an idle partition wakes up behind it;
            # the published one never does (what is behind it stays late).
            now = _INFINITY if everything else wm
            assert now is not None
            if self.frontier is None or now > self.frontier:
                self.frontier = now
        out.closed_through = self.closed_before
        out.watermark = self.frontier
        if wm is not None and wm != _INFINITY:
            self._expire(wm)

    def _emit_minute(self, minute: int, state: Minute, out: KpiOutput) -> None:
        last_order = self.last_order
        since = minute - self.repeat_lookback_ms
        version = self._version = max(self._version + 1, self.version_clock())
        codes = _distinct(state.codes, state.n_codes).get
        scanners = _distinct(state.scanners, state.n_scanners).get
        scans_of = state.scans.get
        reds_of = state.redemptions.get
        orders_of = state.orders.get
        revenue_of = state.revenue.get
        buyers_of = _distinct(state.buyers, state.n_buyers).get
        # repeat buyers per key in C-level passes: a busy minute has hundreds of thousands
        buyer_keys = list(map(_FIRST, state.buyers))
        users = list(map(_SECOND, state.buyers))
        before = map(last_order.get, users, repeat(_NEVER))  # one compact lookup each
        repeats = Counter(compress(buyer_keys, map(since.__le__, before))).get
        names = self.key_names
        append = out.rows.append
        for key in sorted(state.keys, key=names.__getitem__):
            scans = scans_of(key, 0)
            reds = reds_of(key, 0)
            n_buyers = buyers_of(key, 0)
            repeat_n = repeats(key, 0)
            repurchase: float | None = repeat_n / n_buyers if n_buyers else None
            region, channel = names[key]
            append(
                (
                    minute,
                    region,
                    channel,
                    scans,
                    codes(key, 0),
                    scanners(key, 0),
                    reds,
                    orders_of(key, 0),
                    round(revenue_of(key, 0.0), 6),
                    n_buyers,
                    repeat_n,
                    reds / scans if scans else None,
                    repurchase,
                    version,
                )
            )
        # Only after every key of this minute: orders in the same minute are not "before".
        for user in users:
            last_order.set(user, minute)
        # A busy minute's sets are released a slice per batch, not all at once here.
        self._junk.extend(
            x for x in (state.codes, state.scanners, state.buyers) if len(x) > LAZY_DISTINCT
        )

    def _expire(self, wm: int) -> None:
        # The slowest partition's newest event time is wm + lateness: an id older than
        # that by more than the horizon can no longer be "seen again within the horizon".
        cutoff = wm + self.allowed_lateness_ms - self.dedup_horizon_ms
        batches = self.seen_batches
        seen = self.seen
        keep_from = 0
        while keep_from < len(batches) and batches[keep_from][0] < cutoff:
            seen.difference_update(batches[keep_from][1])
            keep_from += 1
        if len(seen) > self.dedup_max_ids:
            while keep_from < len(batches) and len(seen) > self.dedup_max_ids:
                ids = batches[keep_from][1]
                before = len(seen)
                seen.difference_update(ids)
                self.dedup_evictions += before - len(seen)
                keep_from += 1
        if keep_from:
            del batches[:keep_from]
        if self.closed_before is not None and self.closed_before - self._last_purge >= DAY_MS:
            self._last_purge = self.closed_before
            self.last_order.purge(self.closed_before - self.repeat_lookback_ms)

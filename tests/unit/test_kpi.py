"""The KPI aggregator: exact counts, dedup, lateness across partitions, repeat buyers, expiry."""

from __future__ import annotations

import pickle

import numpy as np

from koxpulse.batches import DecodedBatch
from koxpulse.events import AnyEvent, Order, Redemption, Scan, Shipment
from koxpulse.kpi import KPI_COLUMNS, KpiAggregator
from koxpulse.lateness import PartitionClock
from koxpulse.timeutil import DAY_MS, MINUTE_MS

T0 = 1_795_305_600_000  # 2026-11-22T00:00:00Z, a minute and day boundary


def scan(
    eid: str,
    t: int,
    user: str = "u1",
    code: str | None = None,
    region: str = "CN-SD",
    channel: str = "offline",
) -> tuple[AnyEvent, int]:
    return Scan(
        event_id=eid, ts=t, region=region, channel=channel, code_id=code or eid, user_id=user
    ), t


def order(
    eid: str,
    t: int,
    user: str,
    amount: float = 10.0,
    region: str = "CN-SD",
    channel: str = "offline",
) -> tuple[AnyEvent, int]:
    return Order(
        event_id=eid,
        ts=t,
        region=region,
        channel=channel,
        order_id=eid,
        user_id=user,
        amount=amount,
    ), t


def redemption(eid: str, t: int) -> tuple[AnyEvent, int]:
    return Redemption(
        event_id=eid, ts=t, region="CN-SD", channel="offline", code_id="c", user_id="u1"
    ), t


class Feed:
    """Drives partitions through the real lateness step and one aggregator."""

    def __init__(self, *parts: str, **kw: int) -> None:
        self.agg = KpiAggregator(expected_partitions=parts, **kw)
        self.clocks = {p: PartitionClock(kw.get("allowed_lateness_ms", 60_000)) for p in parts}
        self.rows: list[tuple] = []
        self.late: list[str] = []

    def send(self, part: str, events: list[tuple[AnyEvent, int]], eof: bool = False) -> None:
        batch = DecodedBatch(
            part,
            part,
            "",
            0,
            [e for e, _ in events],
            np.array([t for _, t in events], dtype=np.int64),
            list(range(1, len(events) + 1)),
            len(events),
            eof=eof,
        )
        out = self.agg.process(self.clocks[part].tag(batch))
        self.rows += out.rows
        self.late += [e.event_id for e in out.late]

    def table(self) -> dict[tuple[int, str, str], dict[str, object]]:
        return {
            (r[0], r[1], r[2]): dict(zip(KPI_COLUMNS[3:-1], r[3:-1], strict=True))
            for r in self.rows
        }


def test_counts_distincts_and_rates_of_one_minute() -> None:
    f = Feed("a")
    f.send(
        "a",
        [
            scan("s1", T0, "u1", "c1"),
            scan("s2", T0 + 1, "u1", "c1"),
            scan("s3", T0 + 2, "u2", "c2"),
            redemption("r1", T0 + 3),
            order("o1", T0 + 4, "u1", 10.5),
            order("o2", T0 + 5, "u1", 2.25),
        ],
        eof=True,
    )
    assert f.table() == {
        (T0, "CN-SD", "offline"): {
            "scans": 3,
            "unique_codes": 2,
            "scanners": 2,
            "redemptions": 1,
            "orders": 2,
            "revenue": 12.75,
            "buyers": 1,
            "repeat_buyers": 0,
            "redemption_rate": 1 / 3,
            "repurchase_rate": 0.0,
        }
    }


def test_rates_are_null_without_denominator_and_shipments_make_a_row() -> None:
    f = Feed("a")
    ship = Shipment(
        event_id="sh", ts=T0, region="CN-GD", channel="community", batch_id="b", codes=10
    )
    f.send("a", [(ship, T0)], eof=True)
    assert f.table()[(T0, "CN-GD", "community")] == {
        "scans": 0,
        "unique_codes": 0,
        "scanners": 0,
        "redemptions": 0,
        "orders": 0,
        "revenue": 0.0,
        "buyers": 0,
        "repeat_buyers": 0,
        "redemption_rate": None,
        "repurchase_rate": None,
    }


def test_duplicates_are_ignored_even_across_partitions() -> None:
    f = Feed("a", "b")
    f.send("a", [scan("s1", T0), scan("s1", T0)])
    f.send("b", [scan("s1", T0 + 10)], eof=True)
    f.send("a", [], eof=True)
    assert f.table()[(T0, "CN-SD", "offline")]["scans"] == 1


def test_late_event_is_recorded_not_counted() -> None:
    f = Feed("a")
    f.send(
        "a",
        [
            scan("s1", T0 + 5 * MINUTE_MS),
            scan("old", T0 + 5 * MINUTE_MS - 60_001),
            scan("edge", T0 + 5 * MINUTE_MS - 60_000),
        ],
        eof=True,
    )
    assert f.late == ["old"]
    assert sum(r[3] for r in f.rows) == 2  # "edge" is exactly at the limit: on time


def test_a_slow_partition_makes_no_other_event_late_and_holds_windows_open() -> None:
    f = Feed("fast", "slow")
    f.send("fast", [scan("f1", T0 + DAY_MS), scan("f2", T0 + DAY_MS + MINUTE_MS * 3)])
    f.send("slow", [scan("s1", T0)])
    assert f.rows == []  # the slow partition still may deliver minute T0+1..
    f.send("slow", [scan("s2", T0 + 30_000), scan("s3", T0 + 10 * MINUTE_MS)])
    assert [r[0] for r in f.rows] == [T0]  # only the first minute is final now
    f.send(
        "fast", [scan("f3", T0 + DAY_MS + 2 * MINUTE_MS + 30_000)], eof=True
    )  # on time for its partition
    f.send("slow", [], eof=True)
    assert f.late == []
    scans = {r[0]: r[3] for r in f.rows}
    assert scans == {
        T0: 2,
        T0 + 10 * MINUTE_MS: 1,
        T0 + DAY_MS: 1,
        T0 + DAY_MS + 2 * MINUTE_MS: 1,
        T0 + DAY_MS + 3 * MINUTE_MS: 1,
    }


def test_windows_wait_for_every_expected_partition() -> None:
    f = Feed("a", "b")
    f.send("a", [scan("a1", T0), scan("a2", T0 + 10 * MINUTE_MS)])
    assert f.rows == []
    f.send("b", [scan("b1", T0 + 10 * MINUTE_MS)])
    assert [r[0] for r in f.rows] == [T0]


def test_repeat_buyers_across_windows_regions_and_the_90_day_limit() -> None:
    f = Feed("a")
    f.send(
        "a",
        [
            order("o1", T0, "u1"),
            order("o2", T0 + 10, "u1", region="CN-GD"),  # same minute elsewhere: not "before"
            order("o3", T0 + 5, "u3"),
            order("o4", T0 + MINUTE_MS, "u1", region="CN-GD"),  # next minute: repeat
            order("o5", T0 + 2 * MINUTE_MS, "u2"),  # first order: not repeat
        ],
    )
    later = T0 + 90 * DAY_MS + MINUTE_MS
    # u1's last order (T0 + 1 min) is exactly 90 days earlier: inside the lookback.
    # u3's only order (T0) is 90 days + 1 minute earlier: outside it.
    f.send("a", [order("o6", later, "u1"), order("o7", later + 1, "u3")], eof=True)
    t = f.table()
    assert t[(T0, "CN-SD", "offline")]["repeat_buyers"] == 0
    assert t[(T0, "CN-GD", "offline")]["repeat_buyers"] == 0
    assert t[(T0 + MINUTE_MS, "CN-GD", "offline")]["repeat_buyers"] == 1
    assert t[(T0 + 2 * MINUTE_MS, "CN-SD", "offline")]["repeat_buyers"] == 0
    assert t[(later, "CN-SD", "offline")]["buyers"] == 2
    assert t[(later, "CN-SD", "offline")]["repeat_buyers"] == 1
    assert t[(later, "CN-SD", "offline")]["repurchase_rate"] == 0.5


def test_out_of_order_orders_within_lateness_still_count_as_history() -> None:
    f = Feed("a")
    f.send("a", [order("o2", T0 + MINUTE_MS + 5, "u1"), order("o1", T0 + 30_000, "u1")], eof=True)
    t = f.table()
    assert t[(T0 + MINUTE_MS, "CN-SD", "offline")]["repeat_buyers"] == 1


def test_state_expires_with_the_watermark() -> None:
    f = Feed("a", dedup_horizon_ms=15 * MINUTE_MS)
    for i in range(100):
        f.send("a", [scan(f"s{i}-{j}", T0 + i * MINUTE_MS + j, f"u{j}") for j in range(50)])
    agg = f.agg
    assert agg.open_windows <= 2
    # ids more than the horizon older than the newest event are forgotten: 16 minutes remain
    assert len(agg.seen) <= 17 * 50
    f.send("a", [order("o", T0 + 200 * DAY_MS, "u1")], eof=True)
    assert len(agg.last_order) == 1


def test_a_copy_within_the_horizon_is_dropped_and_one_beyond_it_counts() -> None:
    hour = 60 * MINUTE_MS
    f = Feed("a", dedup_horizon_ms=15 * MINUTE_MS, allowed_lateness_ms=hour)
    f.send("a", [scan("x", T0), scan("y", T0)])
    f.send("a", [scan("n1", T0 + 14 * MINUTE_MS), scan("x", T0)])  # 14 min later: a copy
    f.send("a", [scan("n2", T0 + 30 * MINUTE_MS)])
    f.send("a", [scan("n3", T0 + 70 * MINUTE_MS)])  # newest moves on: ids of T0 expire
    f.send("a", [scan("y", T0 + 50 * MINUTE_MS)], eof=True)  # "y" again, 70 min later
    assert f.agg.dedup_evictions == 0
    scans = {r[0]: r[3] for r in f.rows}
    assert scans[T0] == 2 and scans[T0 + 50 * MINUTE_MS] == 1


def test_dedup_memory_has_a_hard_cap() -> None:
    f = Feed("a", dedup_max_ids=100)
    f.send("a", [scan(f"s{j}", T0 + j, f"u{j}") for j in range(500)])
    f.send("a", [scan("next", T0 + 5 * MINUTE_MS)])
    assert len(f.agg.seen) <= 100
    assert f.agg.dedup_evictions >= 400


def test_a_pickled_aggregator_continues_identically() -> None:
    a = Feed("a")
    a.send("a", [scan("s1", T0), order("o1", T0 + 5, "u1")])
    b_agg = pickle.loads(pickle.dumps(a.agg))
    rest = [scan("s1", T0 + 10), order("o2", T0 + MINUTE_MS * 3, "u1")]
    a.send("a", rest, eof=True)
    b = Feed("a")
    b.agg, b.clocks = b_agg, pickle.loads(pickle.dumps(a.clocks))
    b.clocks["a"].newest = T0 + 5
    b.send("a", rest, eof=True)
    strip = [r[:-1] for r in a.rows[-len(b.rows) :]]
    assert strip == [r[:-1] for r in b.rows]


def test_rows_follow_the_sink_column_order() -> None:
    from sinks.tables import KPI_MINUTE

    assert KPI_MINUTE.column_names == KPI_COLUMNS


def test_busy_minutes_keep_exact_distinct_counts_and_release_their_sets_gradually(
    monkeypatch,
) -> None:
    """Past LAZY_DISTINCT a minute counts distinct codes, scanners and buyers as they come
    (no pass over the whole minute when it closes), and its sets are then freed a slice
    per batch; the rows are the same as counting at the close."""
    import random

    import koxpulse.kpi as kpi

    rng = random.Random(2)
    regions = ["CN-SD", "CN-GD", "CN-BJ"]
    batches = []
    n = 0
    for m in range(3):
        for _ in range(8):
            batch = []
            for _ in range(40):
                n += 1
                t = T0 + m * MINUTE_MS + rng.randrange(MINUTE_MS)
                r = rng.choice(regions)
                u = f"u{rng.randrange(30)}"
                if rng.random() < 0.7:
                    batch.append(scan(f"s{n}", t, u, f"c{rng.randrange(60)}", region=r))
                else:
                    batch.append(order(f"o{n}", t, u, region=r))
            batches.append(batch)

    def run() -> tuple[dict, KpiAggregator]:
        f = Feed("a")
        for b in batches:
            f.send("a", b)
        f.send("a", [scan("end", T0 + 10 * MINUTE_MS)])
        return f.table(), f.agg

    lazy, _ = run()
    monkeypatch.setattr(kpi, "LAZY_DISTINCT", 5)
    monkeypatch.setattr(kpi, "RELEASE_PER_BATCH", 7)
    busy, agg = run()
    assert busy == lazy
    assert len(lazy) == 9 and all(v["unique_codes"] > 5 for v in lazy.values())
    # the closed minutes' big sets wait to be freed, and are not part of a snapshot
    assert agg._junk
    assert pickle.loads(pickle.dumps(agg))._junk == []
    batches_needed = 0
    while agg._junk and batches_needed < 400:
        agg.process(DecodedBatch("a", "a", "", 0, [], np.array([], dtype=np.int64), [], 0))
        batches_needed += 1
    assert agg._junk == [] and batches_needed > 3

"""When detection judges events: as soon as the aggregator's watermark passes them.

The fraud detectors see every accepted event once, in one global (ts, event_id) order,
in the batch whose watermark moved past it; nothing accepted can fall behind what was
judged (the aggregator refuses such stragglers as late), so the judged sequence does not
depend on partitioning, batching or interleaving.
"""

from __future__ import annotations

import pickle
import random

import numpy as np

from detectors.fraud import FraudParams
from koxpulse.alerts import Observation
from koxpulse.batches import DecodedBatch
from koxpulse.detection import Detection
from koxpulse.events import AnyEvent, Scan
from koxpulse.kpi import KpiAggregator, KpiOutput
from koxpulse.lateness import PartitionClock
from koxpulse.timeutil import MINUTE_MS

T0 = 1_795_305_600_000  # 2026-11-22T00:00:00Z, a minute boundary
LATENESS = 1_000


def scan(eid: str, t: int, user: str = "u1", code: str | None = None) -> Scan:
    return Scan(
        event_id=eid, ts=t, region="CN-SD", channel="offline", code_id=code or eid, user_id=user
    )


class Recorder:
    """Stands in for the fraud detectors: records what is judged, raises nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        self.seen.append((ev.event_id, t))
        return []


class Pipeline:
    """The real lateness step, aggregator and detection, driven batch by batch."""

    def __init__(self, *parts: str, lateness: int = LATENESS, real: bool = False) -> None:
        self.agg = KpiAggregator(
            allowed_lateness_ms=lateness, expected_partitions=parts, keep_accepted=True
        )
        self.clocks = {p: PartitionClock(lateness) for p in parts}
        self.det = Detection(fraud=FraudParams(dup_min_users=3))
        self.rec = Recorder()
        if not real:
            self.det.fraud = self.rec  # type: ignore[assignment]
        self.late: list[str] = []
        self.last: KpiOutput | None = None

    def send(
        self, part: str, events: list[Scan], *, eof: bool = False, idle: bool = False
    ) -> list[str]:
        """One batch; returns the ids judged while processing it."""
        batch = DecodedBatch(
            part,
            part,
            "",
            0,
            list(events),
            np.array([e.ts for e in events], dtype=np.int64),
            list(range(len(events))),
            len(events),
            eof=eof,
            idle=idle,
        )
        return self._detect(self.agg.process(self.clocks[part].tag(batch)))

    def flush(self) -> list[str]:
        return self._detect(self.agg.flush())

    def _detect(self, out: KpiOutput) -> list[str]:
        self.last = out
        self.late += [e.event_id for e in out.late]
        before = len(self.rec.seen)
        self.alerts = self.det.process(out)
        return [eid for eid, _ in self.rec.seen[before:]]

    def pending(self) -> list[str]:
        return sorted(e.event_id for _, _, run in self.det.pending for e, _ in run)


def test_an_event_is_judged_in_the_batch_where_the_watermark_passes_it() -> None:
    p = Pipeline("a", "b")
    assert p.send("a", [scan("a1", T0 + 100), scan("a2", T0 + 5_000)]) == []
    assert p.last is not None and p.last.watermark is None  # b not heard from yet
    # b's watermark (3000 - 1000) is now the slowest: a1 (100) is behind it, nothing else
    assert p.send("b", [scan("b1", T0 + 3_000)]) == ["a1"]
    assert p.last.watermark == T0 + 2_000
    assert p.send("b", [scan("b2", T0 + 6_000)]) == ["b1"]  # watermark 4000, a's
    assert p.last.watermark == T0 + 4_000
    # a moves to 6000: the watermark is b's 5000; a2 sits exactly on it and must wait,
    # since a later event at 5000 with a smaller id would have to be judged first
    assert p.send("a", [scan("a3", T0 + 7_000)]) == []
    assert p.last.watermark == T0 + 5_000
    assert p.pending() == ["a2", "a3", "b2"]
    assert p.send("b", [scan("b3", T0 + 5_000), scan("b4", T0 + 8_000)]) == ["a2", "b3"]
    assert p.flush() == ["b2", "a3", "b4"]
    assert p.pending() == [] and p.late == []


def test_the_watermark_judges_within_a_minute_long_before_it_closes() -> None:
    p = Pipeline("a")
    p.send("a", [scan("x", T0 + 10_000)])
    assert p.send("a", [scan("y", T0 + 11_001)]) == ["x"]
    assert p.last is not None
    assert p.last.closed_through == T0  # the minute is still open, the event judged
    assert p.last.rows == []


def test_ties_in_time_are_judged_by_event_id_across_partitions() -> None:
    p = Pipeline("a", "b")
    p.send("a", [scan("z", T0 + 1_000), scan("m", T0 + 1_000)])
    p.send("b", [scan("k", T0 + 1_000), scan("a", T0 + 900)])
    assert p.send("a", [scan("late-a", T0 + 5_000)]) == []
    assert p.send("b", [scan("late-b", T0 + 5_000)]) == ["a", "k", "m", "z"]


def test_the_judged_sequence_does_not_depend_on_partitioning_or_batching() -> None:
    rng = random.Random(4)
    events = []
    t = T0
    for i in range(3_000):
        t += rng.randrange(0, 400)
        # out of order, but within the allowed lateness of every partition
        events.append(scan(f"e{i:05d}", t - rng.randrange(0, LATENESS // 2)))
    want = [e.event_id for e in sorted(events, key=lambda e: (e.ts, e.event_id))]

    def run(parts: int, batch: int, seed: int) -> list[str]:
        names = [f"p{i}" for i in range(parts)]
        p = Pipeline(*names)
        split: dict[str, list[Scan]] = {n: [] for n in names}
        for e in events:
            split[names[hash(e.event_id) % parts]].append(e)
        order = random.Random(seed)
        queues = {n: [q[i : i + batch] for i in range(0, len(q), batch)] for n, q in split.items()}
        judged: list[str] = []
        while any(queues.values()):
            n = order.choice([n for n, q in queues.items() if q])
            judged += p.send(n, queues[n].pop(0), eof=not queues[n])
        judged += p.flush()
        assert p.late == []
        return judged

    assert run(1, 3_000, 0) == want
    assert run(3, 97, 1) == want
    assert run(4, 13, 2) == want


def test_work_follows_the_stream_instead_of_one_burst_per_minute() -> None:
    p = Pipeline("a")
    per_batch = []
    for i in range(180):  # three minutes, ten events a second, one batch a second
        per_batch.append(
            len(p.send("a", [scan(f"e{i:03d}{j}", T0 + i * 1_000 + j * 100) for j in range(10)]))
        )
    assert max(per_batch) == 10  # one second's events per batch, never a minute's 600
    # the rest is within the lateness of the newest event (179.9 s): 178.9 s and later
    assert sum(per_batch) == 1_789


def test_an_idle_partition_does_not_hold_judging_back_and_its_stragglers_are_late() -> None:
    p = Pipeline("busy", "quiet")
    p.send("quiet", [scan("q1", T0 + 1_000)])
    p.send("busy", [scan("b1", T0 + 2_000)])
    assert p.send("busy", [scan("b2", T0 + 20_000)]) == []  # held back by quiet (0)
    assert p.send("quiet", [], idle=True) == ["q1", "b1"]  # quiet given up: watermark 19000
    assert p.last is not None and p.last.watermark == T0 + 19_000
    # quiet wakes up: on time for itself, but behind what was judged, so it is late,
    # although its minute is still open; what is at or after the watermark is judged
    assert p.send("quiet", [scan("q2", T0 + 18_999), scan("q3", T0 + 19_000)]) == []
    assert p.late == ["q2"]
    assert p.last.closed_through == T0  # minute T0 still open: q2 used to be accepted
    # the watermark never goes back, although quiet's own (18000) is now the slowest
    assert p.last.watermark == T0 + 19_000
    assert p.send("quiet", [scan("q4", T0 + 22_000)]) == []  # busy's 19000 is the slowest
    assert p.send("busy", [scan("b3", T0 + 25_000)]) == ["q3", "b2"]  # quiet's 21000
    assert p.flush() == ["q4", "b3"]


def test_stragglers_never_reach_the_kpis_or_the_detectors() -> None:
    p = Pipeline("busy", "quiet")
    p.send("quiet", [scan("q1", T0 + 1_000)])
    p.send("busy", [scan("b1", T0 + 30_000)])
    p.send("quiet", [], idle=True)
    p.send("quiet", [scan("q2", T0 + 5_000)])
    p.send("busy", [], eof=True)
    p.send("quiet", [], eof=True)
    assert p.late == ["q2"]
    assert [eid for eid, _ in p.rec.seen] == ["q1", "b1"]


def test_a_real_detector_fires_in_the_batch_where_the_watermark_passes_the_trigger() -> None:
    p = Pipeline("a", real=True)
    p.send("a", [scan("d1", T0 + 1_000, "u1", "c"), scan("d2", T0 + 1_100, "u2", "c")])
    p.send("a", [scan("d3", T0 + 1_200, "u3", "c")])  # the trigger, not yet judged
    assert p.alerts == []
    p.send("a", [scan("x", T0 + 2_200)])  # watermark 1200: the trigger sits on it
    assert p.alerts == []
    p.send("a", [scan("y", T0 + 2_201)])
    assert [(a.kind, a.status, a.starts_at) for a in p.alerts] == [
        ("duplicate_code", "firing", T0 + 1_200)
    ]


def test_a_pickled_pipeline_judges_on_identically() -> None:
    def drive(p: Pipeline, batches: list[list[Scan]]) -> list[str]:
        out: list[str] = []
        for b in batches:
            out += p.send("a", b)
        return out

    batches = [
        [scan(f"e{i}{j}", T0 + i * 700 + (j * 37) % 500) for j in range(7)] for i in range(40)
    ]
    whole = Pipeline("a")
    want = drive(whole, batches) + whole.flush()
    first = Pipeline("a")
    got = drive(first, batches[:17])
    resumed = pickle.loads(pickle.dumps(first))
    got += drive(resumed, batches[17:]) + resumed.flush()
    assert got == want
    assert len(want) == 280


def test_the_flush_judges_everything_left() -> None:
    p = Pipeline("a")
    p.send("a", [scan("x", T0 + MINUTE_MS - 1), scan("y", T0 + MINUTE_MS)])
    assert p.flush() == ["x", "y"]
    assert p.last is not None and p.last.watermark is not None and p.last.watermark > 2**61

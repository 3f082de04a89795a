"""Delivery order: how the valid events end up in the file.

Events arrive roughly in event-time order with a bounded transport jitter (< 20 s,
far inside the 60 s allowed lateness); about 1 % arrive twice (the copy within minutes,
inside the 15-minute dedup horizon); a handful arrive 3-30 minutes late on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import FLAG_INCIDENT, FLAG_PINNED, SHIPMENT, EventStore

LATE_RATE = 0.0002
DUP_RATE = 0.01
LATE_LAG_MS = (210_000, 1_800_000)
"""Delivered 3.5-30 min after its event time: 3-30 min behind the newest event by then."""
MINUTE = 60_000


@dataclass(frozen=True)
class Delivery:
    file_seqs: list[int]
    """Valid lines in file order, as event sequence numbers (a copy repeats its seq)."""
    planned_late: list[int]
    duplicated: list[int]


def plan_delivery(store: EventStore, start_ms: int, end_ms: int, seed: int) -> Delivery:
    rng = np.random.default_rng([seed & ((1 << 64) - 1), 5])
    n = len(store)
    ts, etype, _, flags = store.arrays()
    # transport jitter: mostly sub-second, a tail up to 20 s (always << 60 s lateness)
    u = rng.random(n)
    span = np.where(u < 0.7, 1_500.0, np.where(u < 0.95, 8_000.0, 19_999.0))
    jitter = (rng.random(n) * span).astype(np.int64)
    key = np.where((flags & FLAG_PINNED) != 0, ts, ts + jitter)

    # late: background events only (incident shapes stay intact), never a shipment (a late
    # shipment would make its batch look unauthorised), with room on both sides
    eligible = (
        ((flags & FLAG_INCIDENT) == 0)
        & (etype != SHIPMENT)
        & (ts >= start_ms + 2 * MINUTE)
        & (ts <= end_ms - 31 * MINUTE)
    )
    cand = np.flatnonzero(eligible)
    n_late = round(LATE_RATE * n)
    if n > 10_000:
        n_late = max(n_late, 3)
    elif n > 500:
        n_late = max(n_late, 1)
    n_late = min(n_late, len(cand))
    late = np.sort(rng.choice(cand, size=n_late, replace=False)) if n_late else cand[:0]
    key[late] = ts[late] + rng.integers(*LATE_LAG_MS, size=len(late))

    # duplicates: the copy keeps the same bytes and follows a few lines to a few minutes later
    keep = np.ones(n, dtype=bool)
    keep[late] = False
    pool = np.flatnonzero(keep)
    n_dup = min(round(DUP_RATE * n), len(pool))
    dup = np.sort(rng.choice(pool, size=n_dup, replace=False)) if n_dup else pool[:0]
    near = rng.random(n_dup) < 0.4
    far = np.clip(MINUTE * rng.lognormal(0.0, 1.0, n_dup), 5_000, 10 * MINUTE)
    delta = np.where(near, rng.integers(50, 3_000, n_dup), far.astype(np.int64))
    all_keys = np.concatenate([key, key[dup] + delta])
    all_seqs = np.concatenate([np.arange(n, dtype=np.int64), dup.astype(np.int64)])
    order = np.argsort(all_keys, kind="stable")
    return Delivery(
        file_seqs=all_seqs[order].tolist(),
        planned_late=late.tolist(),
        duplicated=dup.tolist(),
    )

"""Expected kpi_minute rows, from what the simulator knows it wrote.

This deliberately shares no code with the pipeline: it walks the valid events in file
order using the generator's own arrays (event time in epoch ms, key, user, code, amount)
and applies the contract's rules literally: duplicates first, then per-file lateness,
then 1-minute tumbling windows and a 90-day repeat-buyer lookback.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .events import ORDER, REDEMPTION, SCAN, TYPE_NAMES, EventStore
from .timefmt import iso_z
from .world import series_names

ALLOWED_LATENESS_MS = 60_000
LOOKBACK_MS = 90 * 86_400_000
WINDOW_MS = 60_000


@dataclass(frozen=True)
class Truth:
    rows: list[dict[str, Any]]
    late_seqs: list[int]
    duplicates: int
    events_by_type: dict[str, int]
    """Distinct valid events (duplicate copies not included), late ones included."""
    counted_by_type: dict[str, int]


def compute_truth(store: EventStore, file_seqs: Sequence[int]) -> Truth:
    ts = store.ts.tolist()
    etype = store.etype.tolist()
    series = store.series.tolist()
    user = store.user.tolist()
    code = store.code.tolist()
    cents = store.cents.tolist()

    seen = bytearray(len(ts))
    newest = -(1 << 62)
    late: list[int] = []
    dups = 0
    by_type = [0] * len(TYPE_NAMES)
    counted = [0] * len(TYPE_NAMES)
    # [scans, codes, scanners, redemptions, orders, cents, buyers]
    agg: dict[tuple[int, int], list[Any]] = {}
    orders_of: dict[int, list[int]] = {}

    for seq in file_seqs:
        t = ts[seq]
        if seen[seq]:
            dups += 1
        else:
            seen[seq] = 1
            et = etype[seq]
            by_type[et] += 1
            if t < newest - ALLOWED_LATENESS_MS:
                late.append(seq)
            else:
                counted[et] += 1
                key = (t - t % WINDOW_MS, series[seq])
                a = agg.get(key)
                if a is None:
                    a = [0, set(), set(), 0, 0, 0, set()]
                    agg[key] = a
                if et == SCAN:
                    a[0] += 1
                    a[1].add(code[seq])
                    a[2].add(user[seq])
                elif et == REDEMPTION:
                    a[3] += 1
                elif et == ORDER:
                    u = user[seq]
                    a[4] += 1
                    a[5] += cents[seq]
                    a[6].add(u)
                    lst = orders_of.get(u)
                    if lst is None:
                        orders_of[u] = [t]
                    else:
                        lst.append(t)
        if t > newest:
            newest = t

    for lst in orders_of.values():
        lst.sort()

    names = series_names()
    rows: list[dict[str, Any]] = []
    for ws, s in sorted(agg, key=lambda k: (k[0], names[k[1]])):
        scans, codes, scanners, reds, orders, total_cents, buyers = agg[(ws, s)]
        repeat = 0
        for u in buyers:
            lst = orders_of[u]
            i = bisect_left(lst, ws)
            if i > 0 and lst[i - 1] >= ws - LOOKBACK_MS:
                repeat += 1
        region, channel = names[s]
        rows.append(
            {
                "window_start": iso_z(ws),
                "region": region,
                "channel": channel,
                "scans": scans,
                "unique_codes": len(codes),
                "scanners": len(scanners),
                "redemptions": reds,
                "orders": orders,
                "revenue": round(total_cents / 100, 6),
                "buyers": len(buyers),
                "repeat_buyers": repeat,
                "redemption_rate": reds / scans if scans else None,
                "repurchase_rate": repeat / len(buyers) if buyers else None,
            }
        )
    return Truth(
        rows=rows,
        late_seqs=late,
        duplicates=dups,
        events_by_type={TYPE_NAMES[i]: by_type[i] for i in range(len(TYPE_NAMES))},
        counted_by_type={TYPE_NAMES[i]: counted[i] for i in range(len(TYPE_NAMES))},
    )

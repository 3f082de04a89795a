"""Expected kpi_minute rows, from what the simulator knows it wrote.

This deliberately shares no code with the pipeline: it works on the generator's own
arrays (event time in epoch ms, type, key, user, code, amount) in file order and applies
the contract's rules literally: duplicates first, then per-file lateness, then 1-minute
tumbling windows and a 90-day repeat-buyer lookback.

`compute_truth` is the vectorised version used for real runs; `compute_truth_reference`
is the same rules as a plain loop, kept so tests can check one against the other.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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


def compute_truth_reference(store: EventStore, file_seqs: Sequence[int]) -> Truth:
    ts_a, etype_a, series_a, _ = store.arrays()
    ts = ts_a.tolist()
    etype = etype_a.tolist()
    series = series_a.tolist()
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


def _row(
    ws: int,
    region: str,
    channel: str,
    counts: Sequence[int],
) -> dict[str, Any]:
    scans, codes, scanners, reds, orders, total_cents, buyers, repeat = counts
    return {
        "window_start": iso_z(ws),
        "region": region,
        "channel": channel,
        "scans": scans,
        "unique_codes": codes,
        "scanners": scanners,
        "redemptions": reds,
        "orders": orders,
        "revenue": round(total_cents / 100, 6),
        "buyers": buyers,
        "repeat_buyers": repeat,
        "redemption_rate": reds / scans if scans else None,
        "repurchase_rate": repeat / buyers if buyers else None,
    }


def _distinct_pairs(
    group: npt.NDArray[np.int64], value: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct (group, value) pairs, via one int64 key (much faster than unique(axis=0))."""
    if len(group) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    vals, vi = np.unique(value, return_inverse=True)
    pairs = np.sort(group * len(vals) + vi.reshape(-1))
    # sort + neighbour test: numpy's hash-based unique is several times slower here
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    return pairs // len(vals), vals[pairs % len(vals)]


def _distinct_per_group(
    group: npt.NDArray[np.int64], value: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.int64]:
    return np.bincount(_distinct_pairs(group, value)[0], minlength=n_groups)


def compute_truth(store: EventStore, file_seqs: Sequence[int]) -> Truth:
    ts_all, etype_all, series_all, _ = store.arrays()
    user_all = np.frombuffer(store.user, dtype=np.int64)
    code_all = np.frombuffer(store.code, dtype=np.int64)
    cents_all = np.frombuffer(store.cents, dtype=np.int64)
    seqs = np.asarray(file_seqs, dtype=np.int64)
    n_types = len(TYPE_NAMES)

    # dedup first: only the first line of each event_id counts for anything
    first = np.zeros(len(seqs), dtype=bool)
    if len(seqs):
        _, first_pos = np.unique(seqs, return_index=True)
        first[first_pos] = True
    # newest = max event time of all valid lines earlier in the file, copies included
    t_file = ts_all[seqs]
    newest = np.empty(len(seqs), dtype=np.int64)
    if len(seqs):
        newest[0] = np.iinfo(np.int64).min // 2
        np.maximum.accumulate(t_file[:-1], out=newest[1:])
    late = first & (t_file < newest - ALLOWED_LATENESS_MS)
    counted = seqs[first & ~late]
    late_seqs = seqs[late]

    t = ts_all[counted]
    et = etype_all[counted]
    ws = t - t % WINDOW_MS
    key = ws * 256 + series_all[counted]
    uniq, group = np.unique(key, return_inverse=True)
    group = group.reshape(-1)
    n_groups = len(uniq)
    is_scan = et == SCAN
    is_order = et == ORDER
    scans = np.bincount(group[is_scan], minlength=n_groups)
    reds = np.bincount(group[et == REDEMPTION], minlength=n_groups)
    orders = np.bincount(group[is_order], minlength=n_groups)
    cents = np.bincount(group[is_order], weights=cents_all[counted][is_order], minlength=n_groups)
    codes = _distinct_per_group(group[is_scan], code_all[counted][is_scan], n_groups)
    scanners = _distinct_per_group(group[is_scan], user_all[counted][is_scan], n_groups)

    # repeat buyers: a counted order of the same user in [window_start - 90 d, window_start)
    o_user = user_all[counted][is_order]
    o_ts = t[is_order]
    o_group = group[is_order]
    q_group, q_user = _distinct_pairs(o_group, o_user)
    buyers = np.bincount(q_group, minlength=n_groups)
    repeat = np.zeros(n_groups, dtype=np.int64)
    if len(q_group):
        q_ws = uniq[q_group] // 256
        # one sortable key per (user, time): the latest order strictly before the window
        # start is the element just before the query's insertion point, if same user
        base = int(min(o_ts.min(), q_ws.min()))
        span = int(max(o_ts.max(), q_ws.max())) - base + 1
        if (int(o_user.max()) + 1) * span >= 1 << 62:  # pragma: no cover - absurd sizes
            raise OverflowError("run too long for the repeat-buyer index")
        okey = np.sort(o_user * span + (o_ts - base))
        qkey = q_user * span + (q_ws - base)
        prev = np.searchsorted(okey, qkey, side="left") - 1
        safe = np.maximum(prev, 0)
        prev_user = okey[safe] // span
        prev_ts = okey[safe] % span + base
        has_prev = (prev >= 0) & (prev_user == q_user)
        ok = has_prev & (prev_ts >= q_ws - LOOKBACK_MS)
        repeat = np.bincount(q_group[ok], minlength=n_groups)

    names = series_names()
    win = (uniq // 256).tolist()
    ser = (uniq % 256).tolist()
    cols = [
        scans.tolist(),
        codes.tolist(),
        scanners.tolist(),
        reds.tolist(),
        orders.tolist(),
        cents.astype(np.int64).tolist(),
        buyers.tolist(),
        repeat.tolist(),
    ]
    order_rows = sorted(range(n_groups), key=lambda g: (win[g], names[ser[g]]))
    rows = [
        _row(win[g], names[ser[g]][0], names[ser[g]][1], [c[g] for c in cols]) for g in order_rows
    ]
    by_type = np.bincount(etype_all[seqs[first]], minlength=n_types).tolist()
    counted_by_type = np.bincount(et, minlength=n_types).tolist()
    return Truth(
        rows=rows,
        late_seqs=late_seqs.tolist(),
        duplicates=int((~first).sum()),
        events_by_type={TYPE_NAMES[i]: int(by_type[i]) for i in range(n_types)},
        counted_by_type={TYPE_NAMES[i]: int(counted_by_type[i]) for i in range(n_types)},
    )

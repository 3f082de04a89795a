"""What the HTML report shows, read from ClickHouse in a handful of exact (``FINAL``) queries.

The report's period ends at the newest KPI minute rather than at the wall clock, so
a report of a replayed stream shows that stream, and ``--since 24h`` means the last
24 hours *of data*.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, QueryError
from koxpulse.explain import DRILLABLE_KINDS, AlertRow, Explanation, explain_alert
from koxpulse.timeutil import MINUTE_MS, datetime_to_ms
from sinks.tables import quote_ident

MAX_POINTS = 240  # per series: enough for a phone's width, small enough to embed
MAX_ALERTS = 500
MAX_DRILLDOWNS = 60
MIN_RATE_SCANS = 20  # a rate over fewer scans is noise, not a signal
_BUCKETS_MIN = (10, 30, 60, 120, 360, 720, 1440)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")


@dataclass(frozen=True, slots=True)
class Series:
    """One chart: shared x (epoch seconds, bucket starts) and named y series."""

    key: str
    title: str
    unit: str  # "count", "rate" or "cny"
    x: list[int]
    y: dict[str, list[float | None]]
    markers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegionBlock:
    region: str
    charts: list[Series]
    channels: list[dict[str, Any]]  # per channel totals


@dataclass(frozen=True, slots=True)
class ReportData:
    database: str
    start_ms: int
    end_ms: int
    bucket_min: int
    totals: dict[str, Any]
    overview: Series | None
    regions: list[RegionBlock]
    alerts: list[dict[str, Any]]
    drilldowns: dict[str, Explanation]
    dead_letters: list[dict[str, Any]]
    late_events: int

    @property
    def empty(self) -> bool:
        return self.overview is None


def parse_since(text: str | None, newest_ms: int) -> int | None:
    """``36h``/``7d``/``90m`` back from the newest data, or an RFC 3339 time with an offset."""
    if text is None or text == "":
        return None
    m = _DURATION.match(text.strip())
    if m:
        unit = {"m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": 1440 * MINUTE_MS}[m.group(2)]
        return newest_ms - int(float(m.group(1)) * unit)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"--since {text!r}: give a duration (36h, 7d) or an RFC 3339 time"
        ) from exc
    if dt.tzinfo is None:
        raise ConfigError(f"--since {text!r}: the time needs a UTC offset (Z or +08:00)")
    return datetime_to_ms(dt)


def bucket_minutes(span_ms: int) -> int:
    """The smallest bucket from a fixed ladder that keeps a series under MAX_POINTS."""
    for b in _BUCKETS_MIN:
        if span_ms / (b * MINUTE_MS) <= MAX_POINTS:
            return b
    return _BUCKETS_MIN[-1]


def load(client: Client, database: str, since: str | None = None) -> ReportData:
    db = quote_ident(database)
    # min and max need no FINAL: a re-emitted row has the same window_start
    first, newest, n = _rows(
        client,
        "SELECT toUnixTimestamp64Milli(min(window_start)), "
        f"toUnixTimestamp64Milli(max(window_start)), count() FROM {db}.kpi_minute",
    )[0]
    if not n:
        return ReportData(database, 0, 0, 10, {}, None, [], [], {}, _dead(client, db), 0)
    end = int(newest) + MINUTE_MS
    start = max(int(first), parse_since(since, end) or int(first))
    if start >= end:
        raise ConfigError(f"--since {since!r} leaves nothing: the data ends at its newest minute")
    bucket = bucket_minutes(end - start)
    params = {"start": start, "end": end, "bucket": bucket * 60}
    where = (
        "window_start >= fromUnixTimestamp64Milli({start:Int64}) "
        "AND window_start < fromUnixTimestamp64Milli({end:Int64})"
    )
    totals_row = _rows(
        client,
        f"SELECT sum(scans), sum(redemptions), sum(orders), round(sum(revenue), 2), "
        f"sum(repeat_buyers), sum(buyers) FROM {db}.kpi_minute FINAL WHERE {where}",
        params,
    )[0]
    scans, reds, orders, revenue, rep, buyers = (v or 0 for v in totals_row)
    totals = {
        "scans": int(scans),
        "redemptions": int(reds),
        "orders": int(orders),
        "revenue": float(revenue),
        "redemption_rate": reds / scans if scans else None,
        "repurchase_rate": rep / buyers if buyers else None,
    }
    rows = _rows(
        client,
        "SELECT toUnixTimestamp(toStartOfInterval(window_start, "
        "toIntervalSecond({bucket:UInt32}))) AS t, region, channel, "
        "sum(scans), sum(redemptions), sum(orders), sum(revenue), sum(repeat_buyers), "
        f"sum(buyers) FROM {db}.kpi_minute FINAL WHERE {where} "
        "GROUP BY t, region, channel ORDER BY t, region, channel",
        params,
    )
    alerts = _alerts(client, db, params)
    markers = [
        {
            "t": a["starts_ms"] // 1000,
            "region": a["region"],
            "channel": a["channel"],
            "kind": a["kind"],
            "severity": a["severity"],
            "id": a["alert_id"],
        }
        for a in alerts
    ]
    xs = list(range(start // 1000 // (bucket * 60) * bucket * 60, end // 1000, bucket * 60))
    overview, regions = _series(rows, xs, markers)
    drilldowns: dict[str, Explanation] = {}
    for a in alerts:
        if a["kind"] in DRILLABLE_KINDS and len(drilldowns) < MAX_DRILLDOWNS:
            row = AlertRow(
                a["alert_id"],
                a["kind"],
                a["region"],
                a["channel"],
                a["entity_type"],
                a["entity_id"],
                a["starts_ms"],
                a["summary"],
                a["details"],
            )
            drilldowns[a["alert_id"]] = explain_alert(client, database, row)
    (late,) = _rows(client, f"SELECT count() FROM {db}.late_events FINAL")[0]
    return ReportData(
        database,
        start,
        end,
        bucket,
        totals,
        overview,
        regions,
        alerts,
        drilldowns,
        _dead(client, db),
        int(late),
    )


def _alerts(client: Client, db: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    # A KPI detector fires at the end of the bucket it judged, which may lie past the newest
    # minute: an hour of slack keeps the last buckets' alerts in the report.
    rows = _rows(
        client,
        "SELECT alert_id, kind, severity, status, region, channel, entity_type, entity_id, "
        "toUnixTimestamp64Milli(starts_at), toUnixTimestamp64Milli(ends_at), value, baseline, "
        f"summary, details FROM {db}.alerts FINAL "
        "WHERE starts_at >= fromUnixTimestamp64Milli({start:Int64}) "
        "AND starts_at < fromUnixTimestamp64Milli({end:Int64}) + toIntervalHour(1) "
        "ORDER BY starts_at, alert_id LIMIT {limit:UInt32}",
        {**params, "limit": MAX_ALERTS},
    )
    out = []
    for r in rows:
        try:
            details = json.loads(r[13]) if r[13] else {}
        except ValueError:
            details = {"raw": r[13]}
        out.append(
            {
                "alert_id": r[0],
                "kind": r[1],
                "severity": r[2],
                "status": r[3],
                "region": r[4],
                "channel": r[5],
                "entity_type": r[6],
                "entity_id": r[7],
                "starts_ms": int(r[8]),
                "ends_ms": None if r[9] is None else int(r[9]),
                "value": r[10],
                "baseline": r[11],
                "summary": r[12],
                "details": details,
            }
        )
    return out


def _series(
    rows: Sequence[Sequence[Any]], xs: list[int], markers: list[dict[str, Any]]
) -> tuple[Series, list[RegionBlock]]:
    index = {x: i for i, x in enumerate(xs)}
    n = len(xs)
    step = xs[1] - xs[0] if len(xs) > 1 else 3600
    span = max(1, 3600 // step)  # buckets in a trailing hour
    total = {k: [0.0] * n for k in ("scans", "redemptions", "orders")}
    per: dict[str, dict[str, dict[str, list[float]]]] = {}
    for t, region, channel, s, r, o, rev, rep, buyers in rows:
        i = index.get(int(t))
        if i is None:
            continue
        total["scans"][i] += s
        total["redemptions"][i] += r
        total["orders"][i] += o
        ch = per.setdefault(region, {}).setdefault(
            channel, {k: [0.0] * n for k in ("s", "r", "o", "rev", "rep", "b")}
        )
        ch["s"][i] += s
        ch["r"][i] += r
        ch["o"][i] += o
        ch["rev"][i] += rev
        ch["rep"][i] += rep
        ch["b"][i] += buyers
    overview = Series(
        "overview",
        "All regions: scans, redemptions and orders",
        "count",
        xs,
        {k: list(v) for k, v in total.items()},
        markers,
    )
    blocks = []
    for region in sorted(per):
        channels = per[region]
        mine = [m for m in markers if m["region"] == region]
        scans = Series(
            f"{region}-scans",
            f"{region}: scans by channel",
            "count",
            xs,
            {c: list(v["s"]) for c, v in sorted(channels.items())},
            mine,
        )
        rate = Series(
            f"{region}-rate",
            f"{region}: redemption rate (核销率) by channel, trailing hour",
            "rate",
            xs,
            {c: trailing_rate(v["r"], v["s"], span) for c, v in sorted(channels.items())},
            mine,
        )
        orders = Series(
            f"{region}-orders",
            f"{region}: orders by channel",
            "count",
            xs,
            {c: list(v["o"]) for c, v in sorted(channels.items())},
            mine,
        )
        table = []
        for c, v in sorted(channels.items()):
            s, r, o = sum(v["s"]), sum(v["r"]), sum(v["o"])
            b = sum(v["b"])
            table.append(
                {
                    "channel": c,
                    "scans": int(s),
                    "redemptions": int(r),
                    "redemption_rate": r / s if s else None,
                    "orders": int(o),
                    "revenue": round(sum(v["rev"]), 2),
                    "repurchase_rate": sum(v["rep"]) / b if b else None,
                    "alerts": sum(1 for m in mine if m["channel"] == c),
                }
            )
        blocks.append(RegionBlock(region, [scans, rate, orders], table))
    return overview, blocks


def trailing_rate(
    num: Sequence[float], den: Sequence[float], span: int, min_den: float = MIN_RATE_SCANS
) -> list[float | None]:
    """Redemptions per scan over the trailing ``span`` buckets; None on too few scans.

    A redemption comes minutes to hours after its scan, so a per-bucket ratio of a quiet
    channel jumps past 100 %; the detectors judge a trailing hour for the same reason.
    """
    out: list[float | None] = []
    n_sum = d_sum = 0.0
    for i in range(len(num)):
        n_sum += num[i]
        d_sum += den[i]
        if i >= span:
            n_sum -= num[i - span]
            d_sum -= den[i - span]
        out.append(n_sum / d_sum if d_sum >= min_den else None)
    return out


def _dead(client: Client, db: str) -> list[dict[str, Any]]:
    rows = _rows(
        client,
        f"SELECT reason_code, count() AS n, any(reason) FROM {db}.dead_letters FINAL "
        "GROUP BY reason_code ORDER BY n DESC, reason_code",
    )
    return [{"reason_code": r[0], "count": int(r[1]), "example": r[2]} for r in rows]


def _rows(client: Client, sql: str, params: Mapping[str, Any] | None = None) -> list[Sequence[Any]]:
    try:
        result = client.query(sql, parameters=dict(params or {}), settings={"readonly": 1})
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise QueryError(
            f"report query failed: {first[0] if first else exc.__class__.__name__}"
        ) from exc
    return list(result.result_rows)

"""Alert drill-down: which outlets, SKUs, campaigns and devices moved the KPI, ThirdEye-style.

A regional manager who sees "redemption rate fell in CN-GD/offline" asks *where*.
For each dimension we compare the alert window with its baseline (the same clock
window on each of the previous days that have data) and give every value its
share of the change. A value that carries far more of the change than its usual
weight (its *excess*) is what explains the move; the dimension whose top value
has the largest excess is the one to look at first. When no value stands out,
the move is broad (the whole region or channel), and we say so.

One SQL template does the work, with ClickHouse query parameters (``{name:Type}``).
The dashboard panel "What drove the change" runs the very same text with each
parameter bound to a Grafana expression instead (:data:`GRAFANA_BINDINGS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, QueryError
from koxpulse.timeutil import ms_to_iso
from sinks.tables import quote_ident

DIMENSIONS = ("outlet", "sku", "campaign", "device")
_LABEL = {"outlet": "Outlet", "sku": "SKU", "campaign": "Campaign", "device": "Device"}
METRICS = ("scans", "redemptions", "orders", "revenue", "redemption_rate")
DRILLABLE_KINDS = ("kpi_anomaly", "high_scan_low_redemption")
DEFAULT_BASELINE_DAYS = 7
MIN_WINDOW_MS = 10 * 60_000  # the shortest window a detector judges
TOP_PER_DIMENSION = 5
BROAD_EXCESS = 0.2  # below this no single value carries much more than its usual weight
NONE_VALUE = "(none)"
# Pseudo-count that pulls a small value's usual redemption rate toward the overall one,
# so one outlet with 2 usual scans cannot claim a wild expected figure.
RATE_PRIOR = 20

COLUMNS = (
    "dimension",
    "value",
    "now",
    "usual",
    "change",
    "share_of_change",
    "usual_share",
    "excess",
)

_TEMPLATE = """
WITH
    {start:DateTime64(3, 'UTC')} AS cur_start,
    {end:DateTime64(3, 'UTC')} AS cur_end,
    {baseline_days:UInt16} AS days,
    {regions:Array(String)} AS regions,
    {channels:Array(String)} AS channels,
    {metric:String} AS metric,
    arrayMap(d -> cur_start - toIntervalDay(d), range(1, days + 1)) AS base_starts,
    arrayMap(d -> cur_end - toIntervalDay(d), range(1, days + 1)) AS base_ends
SELECT dimension, value, now, usual, change, share_of_change, usual_share,
    share_of_change - usual_share AS excess
FROM (
    SELECT dimension, value, now, usual, change,
        change / nullIf(sum(change) OVER w, 0) AS share_of_change,
        weight / nullIf(sum(weight) OVER w, 0) AS usual_share,
        sign(sum(change) OVER w) AS direction
    FROM (
        SELECT dimension, value,
            if(metric = 'redemption_rate', num_now / nullIf(den_now, 0), num_now) AS now,
            if(metric = 'redemption_rate', num_usual / nullIf(den_usual, 0), num_usual) AS usual,
            if(metric = 'redemption_rate',
               num_now - den_now * (num_usual + {prior:UInt16} * ifNull(overall_rate, 0))
                                 / (den_usual + {prior:UInt16}),
               num_now - num_usual) AS change,
            if(metric = 'redemption_rate', den_now, num_usual) AS weight
        FROM (
            SELECT dimension, value, num_now, den_now,
                num_base / greatest(base_days, 1) AS num_usual,
                den_base / greatest(base_days, 1) AS den_usual,
                sum(num_base) OVER (PARTITION BY dimension)
                    / nullIf(sum(den_base) OVER (PARTITION BY dimension), 0) AS overall_rate
            FROM (
                SELECT dimension, value,
                    sumIf(x, period = 0) AS num_now,
                    toFloat64(countIf(type = 'scan' AND period = 0)) AS den_now,
                    sumIf(x, period > 0) AS num_base,
                    toFloat64(countIf(type = 'scan' AND period > 0)) AS den_base,
                    any(base_days) AS base_days
                FROM (
                    SELECT type, period, x, dim.1 AS dimension, dim.2 AS value,
                        uniqExactIf(period, period > 0) OVER () AS base_days
                    FROM (
                        SELECT e.type AS type,
                            arrayFirstIndex((s, t) -> e.ts >= s AND e.ts < t,
                                            base_starts, base_ends) AS base_day,
                            if(e.ts >= cur_start AND e.ts < cur_end, 0,
                               if(base_day = 0, -1, base_day)) AS period,
                            multiIf(metric = 'scans', toFloat64(e.type = 'scan'),
                                    metric IN ('redemptions', 'redemption_rate'),
                                        toFloat64(e.type = 'redemption'),
                                    metric = 'orders', toFloat64(e.type = 'order'),
                                    metric = 'revenue',
                                        if(e.type = 'order', ifNull(e.amount, 0), 0),
                                    0) AS x,
                            arrayJoin([
                                ('outlet', ifNull(e.outlet_id, '(none)')),
                                ('sku', ifNull(if(e.type = 'redemption', c.scan_sku,
                                                  toString(e.sku)), '(none)')),
                                ('campaign', ifNull(toString(e.campaign_id), '(none)')),
                                ('device', ifNull(e.device_id, '(none)'))
                            ]) AS dim
                        FROM {events} AS e FINAL
                        LEFT ANY JOIN (
                            SELECT code_id, any(toString(sku)) AS scan_sku
                            FROM {events} FINAL
                            WHERE type = 'scan' AND has(regions, region)
                              AND has(channels, channel)
                              AND ts >= arrayMin(base_starts) - toIntervalDay(1)
                              AND ts < cur_end
                            GROUP BY code_id
                        ) AS c ON e.code_id = c.code_id
                        WHERE e.type IN ('scan', 'redemption', 'order')
                          AND has(regions, e.region) AND has(channels, e.channel)
                          AND e.ts >= arrayMin(base_starts) AND e.ts < cur_end
                    )
                    WHERE period >= 0 AND (x != 0 OR type = 'scan')
                )
                GROUP BY dimension, value
            )
        )
    )
    WINDOW w AS (PARTITION BY dimension)
)
ORDER BY dimension, change * direction DESC, value
LIMIT {top:UInt16} BY dimension
"""

_PARAM = re.compile(r"\{(\w+):[^{}]*\}")

GRAFANA_BINDINGS: Mapping[str, str] = {
    "start": "$__fromTime_ms",
    "end": "$__toTime_ms",
    "baseline_days": "${baseline_days}",
    "regions": "[${region:sqlstring}]",
    "channels": "[${channel:sqlstring}]",
    "metric": "${metric:sqlstring}",
    "prior": str(RATE_PRIOR),
    "top": str(TOP_PER_DIMENSION),
}
"""How the dashboard panel fills the template: the dashboard's time range is the window."""


def contribution_sql(database: str) -> str:
    """The drill-down query with ClickHouse ``{name:Type}`` parameters."""
    return _TEMPLATE.replace("{events}", f"{quote_ident(database)}.{quote_ident('events')}")


def grafana_sql(database: str) -> str:
    """The same query with every parameter bound to a Grafana variable or macro."""
    sql = contribution_sql(database)
    return _PARAM.sub(lambda m: GRAFANA_BINDINGS[m.group(1)], sql)


@dataclass(frozen=True, slots=True)
class Contribution:
    dimension: str
    value: str
    now: float | None
    usual: float | None
    change: float
    share_of_change: float | None
    usual_share: float | None
    excess: float | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the drill-down found for one alert."""

    alert_id: str
    kind: str
    region: str
    channel: str
    summary: str
    metric: str | None = None
    start_ms: int = 0
    end_ms: int = 0
    baseline_days: int = 0
    contributions: tuple[Contribution, ...] = ()
    top_dimension: str | None = None  # None: broad move, or not drillable
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drillable(self) -> bool:
        return self.metric is not None

    def verdict(self) -> str:
        """One sentence a manager can act on."""
        if not self.drillable:
            return "Not a KPI alert: the evidence below is what the detector saw."
        if not self.contributions:
            return "No events in the alert window or its baseline: nothing to rank."
        if self.top_dimension is None:
            return (
                f"No single outlet, SKU, campaign or device explains the change in "
                f"{self.metric}: the move is broad across {self.region}/{self.channel}."
            )
        top = next(c for c in self.contributions if c.dimension == self.top_dimension)
        share = f"{top.share_of_change:.0%}" if top.share_of_change is not None else "most"
        usual = f"{top.usual_share:.0%}" if top.usual_share is not None else "a small part"
        return (
            f"{_LABEL[self.top_dimension]} explains most of the move: {top.value} carries "
            f"{share} of the change in {self.metric} while it usually weighs {usual}."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "region": self.region,
            "channel": self.channel,
            "summary": self.summary,
            "metric": self.metric,
            "window": [ms_to_iso(self.start_ms), ms_to_iso(self.end_ms)]
            if self.drillable
            else None,
            "baseline_days": self.baseline_days if self.drillable else None,
            "top_dimension": self.top_dimension,
            "verdict": self.verdict(),
            "contributions": [
                {
                    "dimension": c.dimension,
                    "value": c.value,
                    "now": c.now,
                    "usual": c.usual,
                    "change": c.change,
                    "share_of_change": c.share_of_change,
                    "usual_share": c.usual_share,
                    "excess": c.excess,
                }
                for c in self.contributions
            ],
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    kind: str
    region: str
    channel: str
    entity_type: str
    entity_id: str
    starts_ms: int
    summary: str
    details: dict[str, Any]


def load_alert(client: Client, database: str, alert_id: str) -> AlertRow:
    sql = (
        "SELECT alert_id, kind, region, channel, entity_type, entity_id, "
        "toUnixTimestamp64Milli(starts_at), summary, details "
        f"FROM {quote_ident(database)}.{quote_ident('alerts')} FINAL "
        "WHERE alert_id = {alert_id:String}"
    )
    rows = _query(client, sql, {"alert_id": alert_id})
    if not rows:
        raise ConfigError(f"no alert {alert_id!r} in {database}.alerts")
    r = rows[0]
    try:
        details = json.loads(r[8]) if r[8] else {}
    except ValueError:
        details = {"raw": r[8]}
    return AlertRow(str(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], details)


def metric_of(alert: AlertRow) -> str:
    """The KPI to decompose: 高扫码低核销 is a redemption-rate move; KPI alerts name theirs."""
    if alert.kind == "high_scan_low_redemption":
        return "redemption_rate"
    metric = str(alert.details.get("metric", "scans"))
    # Repeat buying is a property of buyers over 90 days, not of one window's events:
    # its move is decomposed through the orders that make it.
    return {"repurchase_rate": "orders"}.get(metric, metric if metric in METRICS else "scans")


def window_of(alert: AlertRow) -> tuple[int, int]:
    """The detector's evidence: the window it had just judged when it fired."""
    d = alert.details
    minutes = float(d.get("window_minutes") or 0) or float(d.get("window_hours") or 0) * 60
    span = max(int(minutes * 60_000), MIN_WINDOW_MS)
    return alert.starts_ms - span, alert.starts_ms


def explain(
    client: Client,
    database: str,
    alert_id: str,
    *,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
) -> Explanation:
    alert = load_alert(client, database, alert_id)
    return explain_alert(client, database, alert, baseline_days=baseline_days)


def explain_alert(
    client: Client, database: str, alert: AlertRow, *, baseline_days: int = DEFAULT_BASELINE_DAYS
) -> Explanation:
    if alert.kind not in DRILLABLE_KINDS:
        return Explanation(
            alert.alert_id,
            alert.kind,
            alert.region,
            alert.channel,
            alert.summary,
            details=alert.details,
        )
    if baseline_days < 1:
        raise ConfigError("--baseline-days must be at least 1")
    metric = metric_of(alert)
    start, end = window_of(alert)
    rows = run_contributions(
        client,
        database,
        start_ms=start,
        end_ms=end,
        regions=[alert.region],
        channels=[alert.channel],
        metric=metric,
        baseline_days=baseline_days,
    )
    return Explanation(
        alert.alert_id,
        alert.kind,
        alert.region,
        alert.channel,
        alert.summary,
        metric=metric,
        start_ms=start,
        end_ms=end,
        baseline_days=baseline_days,
        contributions=tuple(rows),
        top_dimension=top_dimension(rows),
        details=alert.details,
    )


def run_contributions(
    client: Client,
    database: str,
    *,
    start_ms: int,
    end_ms: int,
    regions: Sequence[str],
    channels: Sequence[str],
    metric: str,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
    top: int = TOP_PER_DIMENSION,
) -> list[Contribution]:
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r}: one of {', '.join(METRICS)}")
    params = {
        "start": _dt64(start_ms),
        "end": _dt64(end_ms),
        "baseline_days": baseline_days,
        "regions": list(regions),
        "channels": list(channels),
        "metric": metric,
        "prior": RATE_PRIOR,
        "top": top,
    }
    rows = _query(client, contribution_sql(database), params)
    return [
        Contribution(
            r[0],
            r[1],
            _num(r[2]),
            _num(r[3]),
            float(r[4] or 0.0),
            _num(r[5]),
            _num(r[6]),
            _num(r[7]),
        )
        for r in rows
    ]


def top_dimension(rows: Sequence[Contribution]) -> str | None:
    """The dimension whose leading value carries most more than its usual weight."""
    best: tuple[float, str] | None = None
    for d in DIMENSIONS:
        lead = next((c for c in rows if c.dimension == d), None)
        if lead is None or lead.excess is None:
            continue
        if best is None or lead.excess > best[0]:
            best = (lead.excess, d)
    if best is None or best[0] < BROAD_EXCESS:
        return None
    return best[1]


def _dt64(ms: int) -> str:
    """A DateTime64(3) parameter value, unambiguous and in UTC."""
    return ms_to_iso(ms).replace("T", " ").rstrip("Z")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if f != f else f  # NaN (0/0 in ClickHouse) is "no value" to people


def _query(client: Client, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
    try:
        result = client.query(sql, parameters=dict(params), settings={"readonly": 1})
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise QueryError(
            f"drill-down query failed: {first[0] if first else exc.__class__.__name__}"
        ) from exc
    return list(result.result_rows)


def format_table(ex: Explanation) -> str:
    """Plain text for a terminal: the verdict, then the ranked values per dimension."""
    lines = [f"{ex.alert_id} ({ex.kind}, {ex.region}/{ex.channel})", ex.summary, ""]
    if not ex.drillable:
        lines.append(ex.verdict())
        lines.append(json.dumps(ex.details, ensure_ascii=False, indent=2, sort_keys=True))
        return "\n".join(lines) + "\n"
    lines.append(
        f"{ex.metric}: window {ms_to_iso(ex.start_ms)} .. {ms_to_iso(ex.end_ms)} vs the same "
        f"hours on up to {ex.baseline_days} previous day(s)"
    )
    lines.append(ex.verdict())
    rate = ex.metric == "redemption_rate"
    for d in DIMENSIONS:
        rows = [c for c in ex.contributions if c.dimension == d]
        if not rows:
            continue
        lines.append("")
        lines.append(f"{d}{' <- explains most' if d == ex.top_dimension else ''}")
        header = f"  {'value':<22}{'now':>10}{'usual':>10}{'change':>10}{'share':>8}{'weight':>8}"
        lines.append(header)
        for c in rows:
            lines.append(
                f"  {c.value[:22]:<22}{_fmt(c.now, rate):>10}{_fmt(c.usual, rate):>10}"
                f"{c.change:>+10.1f}{_pct(c.share_of_change):>8}{_pct(c.usual_share):>8}"
            )
    return "\n".join(lines) + "\n"


def _fmt(v: float | None, rate: bool) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if rate else f"{v:,.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"

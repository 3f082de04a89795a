"""*Regional KPIs*: what a regional manager looks at each morning.

Scans, redemptions, orders and revenue read the ``events`` table so the campaign
variable applies to them (``kpi_minute`` has no campaign); repeat buying is a
property of buyers across campaigns, so it reads ``kpi_minute``. Both tables are
exact under ``FINAL``, so the figures agree with ``koxpulse summary`` and the report.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.catalog import Catalog
from dashboards.common import (
    CAMPAIGN_FILTER,
    CHANNEL_FILTER,
    DATABASE,
    REGION_FILTER,
    alerts_annotation,
    custom_variable,
    dashboard,
    funnel_panel,
    sql_variable,
    t,
    table_panel,
    ts_panel,
)
from koxpulse.explain import COLUMNS as DRILL_COLUMNS
from koxpulse.explain import DEFAULT_BASELINE_DAYS, METRICS, grafana_sql

UID = "koxpulse-regional-kpis"
EVENT_FILTERS = f"{REGION_FILTER} AND {CHANNEL_FILTER} AND {CAMPAIGN_FILTER}"
KPI_FILTERS = f"{REGION_FILTER} AND {CHANNEL_FILTER}"


def _events_series(value: str, types: str) -> str:
    return f"""
SELECT $__timeInterval(ts) AS time, region, {value}
FROM {t("events")} FINAL
WHERE $__timeFilter(ts) AND type IN ({types}) AND {EVENT_FILTERS}
GROUP BY time, region
ORDER BY time, region
"""


def build(catalog: Catalog) -> db.Dashboard:
    d = dashboard(
        UID,
        "koxpulse · Regional KPIs",
        "Scans, redemptions (核销), orders and repeat buying per region and channel, with "
        "alerts marked on the charts.",
        ["kpi", "regional"],
    )
    d = d.with_variable(
        sql_variable(
            catalog,
            UID,
            "region",
            "Region",
            f"SELECT DISTINCT region AS value FROM {t('kpi_minute')} ORDER BY value",
            "Sales regions that have any KPI minute.",
        )
    )
    d = d.with_variable(
        sql_variable(
            catalog,
            UID,
            "channel",
            "Channel",
            f"SELECT DISTINCT channel AS value FROM {t('kpi_minute')} ORDER BY value",
            "Sales channels: e-commerce, offline stores, community group buying.",
        )
    )
    d = d.with_variable(
        sql_variable(
            catalog,
            UID,
            "campaign",
            "Campaign",
            f"SELECT DISTINCT campaign_id AS value FROM {t('events')} "
            "WHERE $__timeFilter(ts) AND type = 'scan' AND campaign_id IS NOT NULL "
            "ORDER BY value",
            "Marketing campaigns behind the codes scanned in the time range.",
        )
    )
    d = d.with_variable(
        custom_variable(
            "metric",
            "Drill-down metric",
            list(METRICS),
            "redemption_rate",
            "Which figure the 'What drove the change' table decomposes.",
        )
    )
    d = d.with_variable(
        custom_variable(
            "baseline_days",
            "Baseline days",
            ["7", "1", "14"],
            str(DEFAULT_BASELINE_DAYS),
            "The drill-down compares the time range with the same hours on this many "
            "previous days (those with data).",
        )
    )
    d = d.annotation(alerts_annotation(catalog, UID))

    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Scans",
            "How many product codes consumers scanned, per region. A sudden jump with no "
            "promotion behind it can mean bot scans; a drop, empty shelves or a broken code.",
            _events_series("count() AS scans", "'scan'"),
            ("time", "region", "scans"),
        )
    )
    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Redemption rate (核销率)",
            "Share of scans whose reward was claimed: redemptions divided by scans. If scans "
            "hold up while this falls, rewards are not reaching consumers (check the "
            "terminals, the reward, or bot scans).",
            _events_series(
                "countIf(type = 'redemption') / nullIf(countIf(type = 'scan'), 0) "
                "AS redemption_rate",
                "'scan', 'redemption'",
            ),
            ("time", "region", "redemption_rate"),
            unit="percentunit",
        )
    )
    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Orders",
            "Purchases per region. Compare with scans: codes scanned without orders "
            "following means the reward is not turning into sales.",
            _events_series("count() AS orders", "'order'"),
            ("time", "region", "orders"),
        )
    )
    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Revenue (CNY)",
            "Order value per region, in yuan.",
            _events_series("round(sum(ifNull(amount, 0)), 2) AS revenue", "'order'"),
            ("time", "region", "revenue"),
            unit="currencyCNY",
        )
    )
    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Repurchase rate",
            "Share of buyers who had already ordered in the previous 90 days. Counted per "
            "buyer across all campaigns, so the campaign filter does not apply here.",
            f"""
SELECT $__timeInterval(window_start) AS time, region,
       sum(repeat_buyers) / nullIf(sum(buyers), 0) AS repurchase_rate
FROM {t("kpi_minute")} FINAL
WHERE $__timeFilter(window_start) AND {KPI_FILTERS}
GROUP BY time, region
ORDER BY time, region
""",
            ("time", "region", "repurchase_rate"),
            unit="percentunit",
        )
    )
    d = d.with_panel(
        funnel_panel(
            catalog,
            UID,
            "Scan → redemption → order",
            "Of everything scanned in the time range, how much was redeemed and how many "
            "orders followed. The gap between the bars is where consumers drop out.",
            f"""
SELECT countIf(type = 'scan') AS scans,
       countIf(type = 'redemption') AS redemptions,
       countIf(type = 'order') AS orders
FROM {t("events")} FINAL
WHERE $__timeFilter(ts) AND type IN ('scan', 'redemption', 'order') AND {EVENT_FILTERS}
""",
            ("scans", "redemptions", "orders"),
        )
    )
    d = d.with_panel(
        table_panel(
            catalog,
            UID,
            "Today vs the same weekday last week",
            "Each region and channel today (China time, up to the end of the time range) "
            "against the same hours seven days earlier. Change is today / last week − 1.",
            f"""
WITH toStartOfDay($__toTime, 'Asia/Shanghai') AS day_start, $__toTime AS day_end
SELECT region, channel,
       sumIf(scans, window_start >= day_start) AS scans_today,
       sumIf(scans, window_start < day_start) AS scans_last_week,
       scans_today / nullIf(scans_last_week, 0) - 1 AS scans_change,
       sumIf(redemptions, window_start >= day_start) / nullIf(scans_today, 0)
           AS redemption_rate_today,
       sumIf(redemptions, window_start < day_start) / nullIf(scans_last_week, 0)
           AS redemption_rate_last_week,
       sumIf(orders, window_start >= day_start) AS orders_today,
       sumIf(orders, window_start < day_start) AS orders_last_week,
       round(sumIf(revenue, window_start >= day_start), 2) AS revenue_today,
       round(sumIf(revenue, window_start < day_start), 2) AS revenue_last_week,
       sumIf(repeat_buyers, window_start >= day_start)
           / nullIf(sumIf(buyers, window_start >= day_start), 0) AS repurchase_rate_today,
       sumIf(repeat_buyers, window_start < day_start)
           / nullIf(sumIf(buyers, window_start < day_start), 0) AS repurchase_rate_last_week
FROM {t("kpi_minute")} FINAL
WHERE ((window_start >= day_start AND window_start < day_end)
       OR (window_start >= day_start - INTERVAL 7 DAY AND window_start < day_end - INTERVAL 7 DAY))
  AND {KPI_FILTERS}
GROUP BY region, channel
ORDER BY region, channel
""",
            (
                "region",
                "channel",
                "scans_today",
                "scans_last_week",
                "scans_change",
                "redemption_rate_today",
                "redemption_rate_last_week",
                "orders_today",
                "orders_last_week",
                "revenue_today",
                "revenue_last_week",
                "repurchase_rate_today",
                "repurchase_rate_last_week",
            ),
            height=10,
        )
    )
    d = d.with_panel(
        table_panel(
            catalog,
            UID,
            "What drove the change",
            "For the chosen metric, each outlet, SKU, campaign and device in the time range "
            "against the same hours on previous days: 'change' is its part of the move, "
            "'share_of_change' its share of the total move and 'usual_share' its usual "
            "weight. A value whose share of the change is far above its usual weight "
            "(large 'excess') explains the move. `koxpulse explain ALERT_ID` runs the same "
            "query for one alert.",
            grafana_sql(DATABASE),
            DRILL_COLUMNS,
            height=12,
        )
    )
    return d

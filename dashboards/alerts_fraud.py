"""*Alerts & fraud*: the on-call view of what is firing and who is behind it.

Entities come from the ``alerts`` table (every fraud kind names one); the
cross-region table is computed from raw events, because a shipment's region is
where its batch is authorised to sell (contract §1) and a scan's region is where
the code turned up.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.catalog import Catalog
from dashboards.common import (
    CHANNEL_FILTER,
    REGION_FILTER,
    alerts_annotation,
    dashboard,
    sql_variable,
    t,
    table_panel,
    ts_panel,
)

UID = "koxpulse-alerts-fraud"
FILTERS = f"{REGION_FILTER} AND {CHANNEL_FILTER}"

ENTITY_PANELS = (
    ("outlet", "Top outlets", "Stores named by alerts: self-redemption, 高扫码低核销 at a store."),
    ("device", "Top devices", "Phones or tills behind reward farming (one device, many accounts)."),
    ("batch", "Top batches", "Batches whose codes turn up outside their authorised region (串货)."),
    ("user", "Top users", "Accounts farming rewards or scanning in two places at once."),
)


def build(catalog: Catalog) -> db.Dashboard:
    d = dashboard(
        UID,
        "koxpulse · Alerts & fraud",
        "Open and recent alerts by kind and region, the outlets, devices, batches and users "
        "behind them, and where codes are scanned outside their authorised region.",
        ["alerts", "fraud"],
    )
    d = d.with_variable(
        sql_variable(
            catalog,
            UID,
            "region",
            "Region",
            f"SELECT DISTINCT region AS value FROM {t('alerts')} WHERE region != '' ORDER BY value",
            "Regions that have had an alert.",
        )
    )
    d = d.with_variable(
        sql_variable(
            catalog,
            UID,
            "channel",
            "Channel",
            f"SELECT DISTINCT channel AS value FROM {t('alerts')} WHERE channel != '' "
            "ORDER BY value",
            "Channels that have had an alert.",
        )
    )
    d = d.annotation(alerts_annotation(catalog, UID))
    d = d.with_panel(
        table_panel(
            catalog,
            UID,
            "Open alerts",
            "Alerts still firing, newest first, whatever the time range. Each stays open "
            "while evidence keeps coming and resolves 30 minutes of event time after the "
            "last. Run `koxpulse explain ALERT_ID` for the drill-down.",
            f"""
SELECT starts_at, kind, severity, region, channel, entity_type, entity_id, summary, alert_id
FROM {t("alerts")} FINAL
WHERE status = 'firing' AND {FILTERS}
ORDER BY starts_at DESC
LIMIT 200
""",
            (
                "starts_at",
                "kind",
                "severity",
                "region",
                "channel",
                "entity_type",
                "entity_id",
                "summary",
                "alert_id",
            ),
        )
    )
    d = d.with_panel(
        ts_panel(
            catalog,
            UID,
            "Alerts raised by kind",
            "How many alerts started in each interval, by kind.",
            f"""
SELECT $__timeInterval(starts_at) AS time, kind, count() AS alerts
FROM {t("alerts")} FINAL
WHERE $__timeFilter(starts_at) AND {FILTERS}
GROUP BY time, kind
ORDER BY time, kind
""",
            ("time", "kind", "alerts"),
        )
    )
    d = d.with_panel(
        table_panel(
            catalog,
            UID,
            "Alerts by kind and region",
            "Alerts that started in the time range, per region and kind, and how many of "
            "them are still firing. Kinds without a region (impossible travel) show '-'.",
            f"""
SELECT if(region = '', '-', region) AS region, kind, count() AS alerts,
       countIf(status = 'firing') AS firing, max(starts_at) AS last_started
FROM {t("alerts")} FINAL
WHERE $__timeFilter(starts_at) AND (region = '' OR {REGION_FILTER})
GROUP BY region, kind
ORDER BY alerts DESC, region, kind
""",
            ("region", "kind", "alerts", "firing", "last_started"),
            width=12,
        )
    )
    for entity_type, title, description in ENTITY_PANELS:
        d = d.with_panel(
            table_panel(
                catalog,
                UID,
                title,
                description + " Ranked by alerts in the time range.",
                f"""
SELECT entity_id AS {entity_type}, count() AS alerts, groupUniqArray(kind) AS kinds,
       argMax(region, starts_at) AS last_region, max(starts_at) AS last_alert,
       countIf(status = 'firing') AS firing
FROM {t("alerts")} FINAL
WHERE entity_type = '{entity_type}' AND $__timeFilter(starts_at)
  AND (region = '' OR {REGION_FILTER})
GROUP BY entity_id
ORDER BY alerts DESC, last_alert DESC
LIMIT 20
""",
                (entity_type, "alerts", "kinds", "last_region", "last_alert", "firing"),
                width=12,
            )
        )
    d = d.with_panel(
        table_panel(
            catalog,
            UID,
            "Cross-region scans (串货): authorised region → scanned region",
            "Codes scanned in a region other than the one their batch was shipped to sell "
            "in. A few stray scans are travellers; many codes of one batch in one foreign "
            "region is channel diversion.",
            f"""
SELECT sh.region AS authorised_region, s.region AS scanned_region,
       uniqExact(s.batch_id) AS batches, uniqExact(s.code_id) AS codes, count() AS scans,
       topK(3)(s.batch_id) AS top_batches
FROM (
    SELECT batch_id, code_id, region
    FROM {t("events")} FINAL
    WHERE type = 'scan' AND $__timeFilter(ts) AND batch_id IS NOT NULL
) AS s
INNER JOIN (
    SELECT batch_id, any(region) AS region
    FROM {t("events")} FINAL
    WHERE type = 'shipment' AND batch_id IS NOT NULL
    GROUP BY batch_id
) AS sh ON s.batch_id = sh.batch_id
WHERE s.region != sh.region
  AND ($__conditionalAll(sh.region IN (${{region:sqlstring}}), $region)
       OR $__conditionalAll(s.region IN (${{region:sqlstring}}), $region))
GROUP BY authorised_region, scanned_region
ORDER BY codes DESC, authorised_region, scanned_region
LIMIT 100
""",
            ("authorised_region", "scanned_region", "batches", "codes", "scans", "top_batches"),
            height=10,
        )
    )
    return d

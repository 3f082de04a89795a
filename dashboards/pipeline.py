"""*Pipeline health*: is koxpulse keeping up, and are alerts reaching people?

Everything here is Prometheus, scraped from ``koxpulse run --metrics-port``.
Panels on lag, window delay, sink latency and alert delivery read metrics that
are listed in :mod:`dashboards.metric_names` as planned until they are exported.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.catalog import Catalog
from dashboards.common import dashboard, prom_stat_panel, prom_ts_panel

UID = "koxpulse-pipeline-health"
RATE = "$__rate_interval"


def _p(q: float, metric: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket[{RATE}])))"


def build(catalog: Catalog) -> db.Dashboard:
    d = dashboard(
        UID,
        "koxpulse · Pipeline health",
        "Throughput, rejected and late messages, Kafka lag, window delay, ClickHouse writes "
        "and alert delivery.",
        ["pipeline", "on-call"],
    ).time("now-6h", "now")
    d = d.with_panel(
        prom_stat_panel(
            catalog,
            UID,
            "Events per second",
            "Events accepted into the KPIs per second over the last five minutes.",
            'sum(rate(koxpulse_events_total{outcome="ok"}[5m]))',
            unit="ops",
        )
    )
    d = d.with_panel(
        prom_stat_panel(
            catalog,
            UID,
            "Watermark behind now",
            "How far event time (the slowest partition's watermark) trails the clock. It "
            "grows when input stalls or a partition falls behind; KPI rows wait for it.",
            "time() - max(koxpulse_watermark_seconds)",
            unit="s",
        )
    )
    d = d.with_panel(
        prom_stat_panel(
            catalog,
            UID,
            "Open windows",
            "Minute windows still waiting for the watermark before they are written.",
            "sum(koxpulse_open_windows)",
        )
    )
    d = d.with_panel(
        prom_stat_panel(
            catalog,
            UID,
            "Kafka lag (messages)",
            "Messages in the topics that koxpulse has not read yet, over all partitions.",
            "sum(koxpulse_kafka_consumer_lag)",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Events per second by outcome",
            "ok: counted in the KPIs; invalid: sent to dead letters; duplicate: a "
            "redelivered event_id, ignored; late: arrived after its window closed.",
            [(f"sum by (outcome) (rate(koxpulse_events_total[{RATE}]))", "{{outcome}}")],
            unit="ops",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Dead letters and late events per second",
            "Rejected messages by reason (each lands in the dead_letters table with the raw "
            "message) and valid events that came too late for their window.",
            [
                (f"sum by (reason) (rate(koxpulse_dead_letters_total[{RATE}]))", "{{reason}}"),
                (f"sum(rate(koxpulse_late_events_total[{RATE}]))", "late"),
            ],
            unit="ops",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Kafka consumer lag by partition",
            "Unread messages per partition. A partition whose lag keeps growing holds every "
            "window open.",
            [("sum by (partition) (koxpulse_kafka_consumer_lag)", "partition {{partition}}")],
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Window emission delay",
            "Time from a minute window's end to its KPI row being emitted (median and 95th "
            "percentile). Dashboards are at least this much behind.",
            [
                (_p(0.5, "koxpulse_window_emission_delay_seconds"), "p50"),
                (_p(0.95, "koxpulse_window_emission_delay_seconds"), "p95"),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "ClickHouse write latency (p95) and errors",
            "How long one batched insert takes per table, and failed writes per second.",
            [
                (_p(0.95, "koxpulse_sink_write_seconds", "table"), "p95 {{table}}"),
                (f"sum(rate(koxpulse_sink_errors_total[{RATE}]))", "errors/s"),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Rows written per second",
            "KPI rows and alert updates written; flat zero while events flow means windows "
            "are not closing.",
            [
                (f"sum(rate(koxpulse_kpi_rows_total[{RATE}]))", "kpi rows"),
                (f"sum(rate(koxpulse_alert_updates_total[{RATE}]))", "alert updates"),
                (f"sum(rate(koxpulse_dedup_evictions_total[{RATE}]))", "dedup evictions"),
            ],
            unit="ops",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Alert delivery to Alertmanager",
            "Alerts posted, failed posts (retried) and alerts dropped after the retries ran "
            "out. Any drop means someone was not paged.",
            [
                (f"sum(rate(koxpulse_alertmanager_alerts_sent_total[{RATE}]))", "sent"),
                (f"sum(rate(koxpulse_alertmanager_send_failures_total[{RATE}]))", "failed"),
                (f"sum(rate(koxpulse_alertmanager_dropped_total[{RATE}]))", "dropped"),
            ],
            unit="ops",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Event to alert latency",
            "From the event that made a detector fire to the alert leaving koxpulse "
            "(median and 95th percentile).",
            [
                (_p(0.5, "koxpulse_event_to_alert_seconds"), "p50"),
                (_p(0.95, "koxpulse_event_to_alert_seconds"), "p95"),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        prom_ts_panel(
            catalog,
            UID,
            "Messages read per second by source",
            "Raw messages (lines or Kafka records) read, before decoding.",
            [(f"sum by (source) (rate(koxpulse_messages_read_total[{RATE}]))", "{{source}}")],
            unit="ops",
        )
    )
    return d

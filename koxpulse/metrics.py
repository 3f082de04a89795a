"""Prometheus metrics of one pipeline, on a registry the caller owns (tests pass their own).

Labels are bounded by construction: event types and outcomes are fixed sets,
dead-letter reasons are reason *codes* (``missing_field``), never the free text
or an id taken from the input; sinks and tables are the pipeline's own names,
Kafka partitions are those configured, Alertmanagers those configured. The one
label that comes from the data, region × channel on the live KPIs, is folded:
the first ``max_regions`` regions and ``max_channels`` channels seen keep their
names and every later one is reported as ``other``, so a producer sending a
thousand regions cannot make a thousand series. No outlet, user, device or code
is ever a label.

Everything is updated once per batch (or per emitted minute, per alert post),
never per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    write_to_textfile,
)

from koxpulse.kpi_metrics import KpiCollector

# ``*_created`` samples would double the series of every counter and histogram and say
# nothing a dashboard uses (process start time covers it).
disable_created_metrics()

OUTCOMES = ("ok", "invalid", "duplicate", "late")
EVENT_TYPES = ("scan", "redemption", "order", "shipment")

# Buckets in seconds, chosen for what each histogram answers.
EMISSION_DELAY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ALERT_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Counters, gauges and histograms of one run."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_regions: int = 50,
        max_channels: int = 10,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.wall_clock = wall_clock
        r = self.registry
        self.messages = Counter(
            "koxpulse_messages_read",
            "Messages (lines or Kafka records) read",
            ["source"],
            registry=r,
        )
        self.events = Counter(
            "koxpulse_events",
            "Events by type and outcome (invalid messages have type unknown)",
            ["type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "koxpulse_dead_letters", "Invalid messages by reason code", ["reason"], registry=r
        )
        self.late_events = Counter(
            "koxpulse_late_events",
            "Valid events that arrived after their window closed",
            registry=r,
        )
        self.kpi_rows = Counter("koxpulse_kpi_rows", "kpi_minute rows emitted", registry=r)
        self.open_windows = Gauge(
            "koxpulse_open_windows", "Minute windows waiting for the watermark", registry=r
        )
        self.watermark = Gauge(
            "koxpulse_watermark_seconds", "Event-time watermark over all partitions", registry=r
        )
        self.alerts = Counter(
            "koxpulse_alert_updates",
            "Alert rows written (raised, escalated or resolved)",
            registry=r,
        )
        self.dedup_evictions = Counter(
            "koxpulse_dedup_evictions",
            "Event ids dropped from the dedup memory early because of its size cap",
            registry=r,
        )
        # -- source, windows, sinks ----------------------------------------------------
        self.kafka_lag = Gauge(
            "koxpulse_kafka_consumer_lag",
            "Messages in a Kafka partition after the next one to read (high watermark as "
            "last fetched, minus the next offset; 0 when the broker reports less)",
            ["topic", "partition"],
            registry=r,
        )
        self.emission_delay = Histogram(
            "koxpulse_window_emission_delay_seconds",
            "Live runs: wall time from a minute window's end plus the allowed lateness to "
            "its emission (how long after it could have closed it was written)",
            buckets=EMISSION_DELAY_BUCKETS,
            registry=r,
        )
        self.sink_write = Histogram(
            "koxpulse_sink_write_seconds",
            "Duration of one sink write (one ClickHouse insert)",
            ["sink", "table"],
            buckets=WRITE_BUCKETS,
            registry=r,
        )
        self.sink_errors = Counter(
            "koxpulse_sink_errors",
            "Failed sink writes (ClickHouse inserts, Kafka deliveries); ClickHouse writes "
            "are retried with backoff",
            ["sink", "table"],
            registry=r,
        )
        self.sink_up = Gauge(
            "koxpulse_sink_up",
            "1 while ClickHouse takes writes, 0 while writes are failing and being retried",
            registry=r,
        )
        self.sink_up.set(1)
        # -- alerts ---------------------------------------------------------------------
        self.event_to_alert = Histogram(
            "koxpulse_event_to_alert_seconds",
            "Wall time from receiving the batch whose processing raised or resolved an alert "
            "to that alert leaving the detection step (one sample per alert update)",
            buckets=ALERT_LATENCY_BUCKETS,
            registry=r,
        )
        self.am_sent = Counter(
            "koxpulse_alertmanager_alerts_sent",
            "Alerts Alertmanager accepted, by first send (new or changed) or resend",
            ["alertmanager", "send"],
            registry=r,
        )
        self.am_failures = Counter(
            "koxpulse_alertmanager_send_failures",
            "Failed posts to Alertmanager (each is retried with backoff unless rejected)",
            ["alertmanager", "reason"],
            registry=r,
        )
        self.am_dropped = Counter(
            "koxpulse_alertmanager_dropped",
            "Alert sends given up: queue_full (oldest resend), overflow (first send beyond "
            "the hard cap), rejected (4xx from Alertmanager), shutdown (undelivered at exit)",
            ["alertmanager", "reason"],
            registry=r,
        )
        self.am_queue = Gauge(
            "koxpulse_alertmanager_queue_depth",
            "Alert sends waiting for Alertmanager",
            ["alertmanager"],
            registry=r,
        )
        self.am_active = Gauge(
            "koxpulse_alertmanager_active_alerts",
            "Alerts being re-sent: firing, or resolved less than the resolved-resend time ago",
            ["alertmanager"],
            registry=r,
        )
        self.am_request = Histogram(
            "koxpulse_alertmanager_request_seconds",
            "Duration of one post to Alertmanager, successful or not",
            ["alertmanager"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.am_delivery = Histogram(
            "koxpulse_alertmanager_delivery_seconds",
            "Wall time from handing a new or changed alert to the sender to Alertmanager "
            "accepting it (retries and outages included)",
            ["alertmanager"],
            buckets=ALERT_LATENCY_BUCKETS,
            registry=r,
        )
        # -- live KPIs (built at scrape time, see koxpulse.kpi_metrics) -------------------
        self.kpis = KpiCollector(max_regions, max_channels)
        r.register(self.kpis)

    # -- updates ----------------------------------------------------------------------

    def observe_kpi_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Closed ``kpi_minute`` rows into the live KPI metrics."""
        self.kpis.add(rows)

    def observe_emission(self, window_starts: Iterable[int], lateness_ms: int) -> None:
        """Delay of each emitted minute past the moment it could close (live runs)."""
        now = self.wall_clock()
        for start in window_starts:
            self.emission_delay.observe(max(0.0, now - (start + 60_000 + lateness_ms) / 1000))

    def observe_alerts(self, count: int, received_at_ms: int | None) -> None:
        if count and received_at_ms is not None:
            delay = max(0.0, self.wall_clock() - received_at_ms / 1000)
            for _ in range(count):
                self.event_to_alert.observe(delay)

    # -- reading ----------------------------------------------------------------------

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (0 when absent), for summaries and tests."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v

    def total(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples over all label values, or over those matching ``labels``."""
        total = 0.0
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def series_count(self) -> int:
        """Number of samples the registry exposes: what a scrape stores as series."""
        return sum(len(m.samples) for m in self.registry.collect())

    def write_textfile(self, path: str) -> None:
        write_to_textfile(path, self.registry)

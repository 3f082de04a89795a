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

import math
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

# ``*_created`` samples would double the series of every counter and histogram and say
# nothing a dashboard uses (process start time covers it).
disable_created_metrics()

OUTCOMES = ("ok", "invalid", "duplicate", "late")
EVENT_TYPES = ("scan", "redemption", "order", "shipment")
OTHER = "other"

# Buckets in seconds, chosen for what each histogram answers.
EMISSION_DELAY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ALERT_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LabelFolder:
    """The first ``limit`` distinct values keep their name, every later one is ``other``.

    Only kept names are remembered, so memory is bounded by ``limit`` too, whatever
    the input sends.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._kept:
            return value
        if len(self._kept) < self.limit and value != OTHER:
            self._kept.add(value)
            return value
        return OTHER


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
        self.fold_region = LabelFolder(max_regions)
        self.fold_channel = LabelFolder(max_channels)
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
            "Failed sink writes (ClickHouse inserts, Kafka deliveries)",
            ["sink", "table"],
            registry=r,
        )
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
        # -- live KPIs ------------------------------------------------------------------
        kpi_labels = ["region", "channel"]
        self.kpi_scans = Counter(
            "koxpulse_kpi_scans", "Scans in closed minutes", kpi_labels, registry=r
        )
        self.kpi_redemptions = Counter(
            "koxpulse_kpi_redemptions", "Redemptions in closed minutes", kpi_labels, registry=r
        )
        self.kpi_orders = Counter(
            "koxpulse_kpi_orders", "Orders in closed minutes", kpi_labels, registry=r
        )
        self.kpi_revenue = Counter(
            "koxpulse_kpi_revenue_cny",
            "Order revenue in closed minutes, CNY",
            kpi_labels,
            registry=r,
        )
        self.last_scans = Gauge(
            "koxpulse_kpi_last_minute_scans",
            "Scans in the last closed minute",
            kpi_labels,
            registry=r,
        )
        self.last_redemptions = Gauge(
            "koxpulse_kpi_last_minute_redemptions",
            "Redemptions in the last closed minute",
            kpi_labels,
            registry=r,
        )
        self.last_rate = Gauge(
            "koxpulse_kpi_last_minute_redemption_rate",
            "Redemptions / scans in the last closed minute (NaN without scans)",
            kpi_labels,
            registry=r,
        )
        self.last_orders = Gauge(
            "koxpulse_kpi_last_minute_orders",
            "Orders in the last closed minute",
            kpi_labels,
            registry=r,
        )
        self.last_revenue = Gauge(
            "koxpulse_kpi_last_minute_revenue_cny",
            "Order revenue in the last closed minute, CNY",
            kpi_labels,
            registry=r,
        )
        self.last_minute = Gauge(
            "koxpulse_kpi_last_minute_start_seconds",
            "Start of the minute the koxpulse_kpi_last_minute_* gauges describe (event time)",
            registry=r,
        )
        self.kpi_folded = Counter(
            "koxpulse_kpi_folded_rows",
            "kpi_minute rows whose region or channel is reported as 'other' in the KPI metrics",
            registry=r,
        )
        self._last_keys: set[tuple[str, str]] = set()

    # -- updates ----------------------------------------------------------------------

    def observe_kpi_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add closed minutes to the KPI counters; the newest one becomes the gauges.

        ``rows`` are ``kpi_minute`` rows (window_start ms, region, channel, scans, ...,
        redemptions at 6, orders at 7, revenue at 8), in minute order.
        """
        if not rows:
            return
        sums: dict[tuple[str, str], list[float]] = {}
        newest = max(row[0] for row in rows)
        last: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            key = (row[1], row[2])
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = [0, 0, 0, 0.0]
            acc[0] += row[3]
            acc[1] += row[6]
            acc[2] += row[7]
            acc[3] += row[8]
            if row[0] == newest:
                last[key] = [row[3], row[6], row[7], row[8]]
        folded_rows = 0
        totals: dict[tuple[str, str], list[float]] = {}
        for (region, channel), acc in sums.items():
            key = (self.fold_region(region), self.fold_channel(channel))
            if key != (region, channel):
                folded_rows += 1
            t = totals.setdefault(key, [0, 0, 0, 0.0])
            for i in range(4):
                t[i] += acc[i]
        for (region, channel), (scans, reds, orders, revenue) in totals.items():
            self.kpi_scans.labels(region, channel).inc(scans)
            self.kpi_redemptions.labels(region, channel).inc(reds)
            self.kpi_orders.labels(region, channel).inc(orders)
            self.kpi_revenue.labels(region, channel).inc(revenue)
        if folded_rows:
            self.kpi_folded.inc(folded_rows)
        self._set_last_minute(newest, last)

    def _set_last_minute(self, minute_ms: int, rows: dict[tuple[str, str], list[float]]) -> None:
        folded: dict[tuple[str, str], list[float]] = {}
        for (region, channel), values in rows.items():
            key = (self.fold_region(region), self.fold_channel(channel))
            f = folded.setdefault(key, [0, 0, 0, 0.0])
            for i in range(4):
                f[i] += values[i]
        # a key that had rows before but none in this minute had nothing in it
        for key in self._last_keys - folded.keys():
            folded[key] = [0, 0, 0, 0.0]
        for (region, channel), (scans, reds, orders, revenue) in folded.items():
            self.last_scans.labels(region, channel).set(scans)
            self.last_redemptions.labels(region, channel).set(reds)
            self.last_rate.labels(region, channel).set(reds / scans if scans else math.nan)
            self.last_orders.labels(region, channel).set(orders)
            self.last_revenue.labels(region, channel).set(revenue)
        self._last_keys = set(folded)
        self.last_minute.set(minute_ms / 1000)

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

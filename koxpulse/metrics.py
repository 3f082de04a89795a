"""Prometheus metrics of one pipeline, on a registry the caller owns (tests pass their own).

Labels are bounded by construction: event types and outcomes are fixed sets
and dead-letter reasons are reason *codes* (``missing_field``), never the
free text or an id taken from the input.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

OUTCOMES = ("ok", "invalid", "duplicate", "late")


class Metrics:
    """Counters and gauges updated once per batch, never per event."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "koxpulse_messages_read",
            "Messages (lines or Kafka records) read",
            ["source"],
            registry=r,
        )
        self.events = Counter(
            "koxpulse_events", "Events by type and outcome", ["type", "outcome"], registry=r
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

        self.sink_errors = Counter(
            "koxpulse_sink_errors",
            "Failed ClickHouse writes (each is retried with backoff)",
            ["table"],
            registry=r,
        )
        self.sink_up = Gauge(
            "koxpulse_sink_up",
            "1 while ClickHouse takes writes, 0 while writes are failing and being retried",
            registry=r,
        )
        self.sink_up.set(1)

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

    def write_textfile(self, path: str) -> None:
        write_to_textfile(path, self.registry)

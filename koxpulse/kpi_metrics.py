"""Live KPIs per region × channel as Prometheus metrics, folded and computed at scrape time.

Regional managers' panels read these from Prometheus. Updating hundreds of
labelled children per batch costs more than the batch's own counting, so closed
minutes only add into plain dictionaries here; the metric families are built
when Prometheus scrapes (every 15 s or so), which is where that work belongs.

Cardinality is bounded by folding: the first ``max_regions`` regions and
``max_channels`` channels seen keep their names, later ones are ``other``.
Nothing is lost by folding: ``other`` holds their sums.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

OTHER = "other"
Key = tuple[str, str]  # (region, channel), folded

COUNTERS = (
    ("koxpulse_kpi_scans", "Scans in closed minutes"),
    ("koxpulse_kpi_redemptions", "Redemptions in closed minutes"),
    ("koxpulse_kpi_orders", "Orders in closed minutes"),
    ("koxpulse_kpi_revenue_cny", "Order revenue in closed minutes, CNY"),
)
GAUGES = (
    ("koxpulse_kpi_last_minute_scans", "Scans in the last closed minute"),
    ("koxpulse_kpi_last_minute_redemptions", "Redemptions in the last closed minute"),
    ("koxpulse_kpi_last_minute_orders", "Orders in the last closed minute"),
    ("koxpulse_kpi_last_minute_revenue_cny", "Order revenue in the last closed minute, CNY"),
)
# kpi_minute row positions of scans, redemptions, orders, revenue
_SCANS, _REDS, _ORDERS, _REVENUE = 3, 6, 7, 8


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


class KpiCollector(Collector):
    """Totals and last closed minute per folded (region, channel), exposed on scrape."""

    def __init__(self, max_regions: int, max_channels: int) -> None:
        self.fold_region = LabelFolder(max_regions)
        self.fold_channel = LabelFolder(max_channels)
        self._lock = threading.Lock()
        self._totals: dict[Key, list[float]] = {}
        self._last: dict[Key, list[float]] = {}
        self._last_minute: float | None = None
        self.folded_rows = 0

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add ``kpi_minute`` rows (minute order); the newest minute becomes the gauges."""
        if not rows:
            return
        newest = max(r[0] for r in rows)
        sums: dict[tuple[str, str], list[float]] = {}
        last: dict[tuple[str, str], list[float]] = {}
        for r in rows:
            raw = (r[1], r[2])
            acc = sums.get(raw)
            if acc is None:
                acc = sums[raw] = [0, 0, 0, 0.0, 0]
            acc[0] += r[_SCANS]
            acc[1] += r[_REDS]
            acc[2] += r[_ORDERS]
            acc[3] += r[_REVENUE]
            acc[4] += 1
            if r[0] == newest:
                last[raw] = [r[_SCANS], r[_REDS], r[_ORDERS], r[_REVENUE]]
        with self._lock:
            for raw, acc in sums.items():
                key = self._fold(raw)
                if key != raw:
                    self.folded_rows += int(acc[4])
                t = self._totals.get(key)
                if t is None:
                    t = self._totals[key] = [0, 0, 0, 0.0]
                for i in range(4):
                    t[i] += acc[i]
            # every key seen so far: one without a row in this minute had nothing in it
            minute: dict[Key, list[float]] = {key: [0, 0, 0, 0.0] for key in self._totals}
            for raw, values in last.items():
                m = minute[self._fold(raw)]
                for i in range(4):
                    m[i] += values[i]
            self._last = minute
            self._last_minute = newest / 1000

    def _fold(self, raw: tuple[str, str]) -> Key:
        return (self.fold_region(raw[0]), self.fold_channel(raw[1]))

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._lock:
            totals = {k: list(v) for k, v in self._totals.items()}
            last = self._last
            last_minute = self._last_minute
            folded = self.folded_rows
        labels = ["region", "channel"]
        for i, (name, doc) in enumerate(COUNTERS):
            family = CounterMetricFamily(name, doc, labels=labels)
            for (region, channel), values in totals.items():
                family.add_metric([region, channel], values[i])
            yield family
        for i, (name, doc) in enumerate(GAUGES):
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            for (region, channel), values in last.items():
                gauge.add_metric([region, channel], values[i])
            yield gauge
        rate = GaugeMetricFamily(
            "koxpulse_kpi_last_minute_redemption_rate",
            "Redemptions / scans in the last closed minute (NaN without scans)",
            labels=labels,
        )
        for (region, channel), v in last.items():
            rate.add_metric([region, channel], v[1] / v[0] if v[0] else math.nan)
        yield rate
        start = GaugeMetricFamily(
            "koxpulse_kpi_last_minute_start_seconds",
            "Start of the minute the koxpulse_kpi_last_minute_* gauges describe (event time)",
        )
        if last_minute is not None:
            start.add_metric([], last_minute)
        yield start
        yield CounterMetricFamily(
            "koxpulse_kpi_folded_rows",
            "kpi_minute rows whose region or channel is reported as 'other' in the KPI metrics",
            value=folded,
        )

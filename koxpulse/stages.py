"""The work of each dataflow step as plain functions and classes, testable without Bytewax.

``flows/`` only wires these together; keeping the logic here means every step
can be unit-tested with ordinary values and the wiring stays readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bytewax.operators import StatefulLogic

from koxpulse.alerts import Alert
from koxpulse.batches import DecodedBatch, RawBatch
from koxpulse.decode import decode_batch
from koxpulse.detection import Detection
from koxpulse.kpi import KpiAggregator, KpiOutput
from koxpulse.lateness import PartitionClock
from koxpulse.metrics import Metrics
from koxpulse.settings import Settings
from koxpulse.timeutil import DAY_MS
from sinks.event_columns import event_lines

TableRows = tuple[str, list[tuple[Any, ...]]]


class Stages:
    """Step functions bound to one run's settings, metrics and clocks."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        expected_partitions: list[str],
        version_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.expected_partitions = expected_partitions
        self.version_clock = version_clock
        # window emission delay only means something when event time follows the wall clock
        self.live = bool(settings.kafka_bootstrap)

    # decode ------------------------------------------------------------------------------
    def decode(self, batch: RawBatch) -> DecodedBatch:
        out = decode_batch(batch)
        m = self.metrics
        m.messages.labels(source="kafka" if batch.position_prefix else "file").inc(out.messages)
        for dl in out.dead:
            m.dead_letters.labels(reason=dl.code).inc()
        if out.dead:
            m.events.labels(type="unknown", outcome="invalid").inc(len(out.dead))
        return out

    def dead_letter_rows(self, batch: DecodedBatch) -> TableRows | None:
        if not batch.dead:
            return None
        version = self.version_clock()
        return (
            "dead_letters",
            [
                (d.received_at_ms, d.source, d.position, d.reason, d.code, d.raw, version)
                for d in batch.dead
            ],
        )

    # lateness ----------------------------------------------------------------------------
    def lateness(
        self, state: PartitionClock | None, batch: DecodedBatch
    ) -> tuple[PartitionClock, DecodedBatch]:
        if state is None:
            state = PartitionClock(self.settings.allowed_lateness_ms)
        return state, state.tag(batch)

    # aggregation -------------------------------------------------------------------------
    def new_aggregator(self) -> KpiAggregator:
        s = self.settings
        return KpiAggregator(
            allowed_lateness_ms=s.allowed_lateness_ms,
            dedup_horizon_ms=s.dedup_horizon_ms,
            dedup_max_ids=s.dedup_max_ids,
            repeat_lookback_ms=s.repeat_lookback_days * DAY_MS,
            expected_partitions=self.expected_partitions,
            keep_accepted=s.detectors or s.store_events,
            version_clock=self.version_clock,
        )

    def aggregate_logic(self, resume: KpiAggregator | None) -> AggregateLogic:
        return AggregateLogic(resume if resume is not None else self.new_aggregator(), self)

    def account(self, out: KpiOutput, agg: KpiAggregator) -> None:
        m = self.metrics
        events = m.events
        for type_, n in out.ok_by_type.items():
            events.labels(type=type_, outcome="ok").inc(n)
        for type_, n in out.duplicates_by_type.items():
            events.labels(type=type_, outcome="duplicate").inc(n)
        if out.late:
            m.late_events.inc(len(out.late))
            late_by_type: dict[str, int] = {}
            for e in out.late:
                late_by_type[e.type] = late_by_type.get(e.type, 0) + 1
            for type_, n in late_by_type.items():
                events.labels(type=type_, outcome="late").inc(n)
        if out.rows:
            m.kpi_rows.inc(len(out.rows))
            m.observe_kpi_rows(out.rows)
            if self.live:
                m.observe_emission({r[0] for r in out.rows}, self.settings.allowed_lateness_ms)
        m.open_windows.set(agg.open_windows)
        if out.watermark is not None and out.watermark < 2**61:
            m.watermark.set(out.watermark / 1000)

    def event_rows(self, item: tuple[str, KpiOutput]) -> tuple[str, Any] | None:
        out = item[1]
        if not out.accepted_events:
            return None
        return (
            "events",
            event_lines(out.accepted_events, out.accepted_ts, self.version_clock()),
        )

    @staticmethod
    def kpi_rows(item: tuple[str, KpiOutput]) -> TableRows | None:
        out = item[1]
        return ("kpi_minute", out.rows) if out.rows else None  # type: ignore[return-value]

    def late_rows(self, item: tuple[str, KpiOutput]) -> TableRows | None:
        out = item[1]
        if not out.late:
            return None
        version = self.version_clock()
        return (
            "late_events",
            [
                (
                    e.received_at_ms,
                    e.ts,
                    e.type,
                    e.region,
                    e.channel,
                    e.event_id,
                    e.source,
                    e.position,
                    version,
                )
                for e in out.late
            ],
        )

    # detection ---------------------------------------------------------------------------
    def detect_logic(self, resume: Detection | None) -> DetectLogic:
        if resume is not None:
            return DetectLogic(resume, self.metrics)
        s = self.settings
        return DetectLogic(
            Detection(s.detection_params(), s.fraud_params(), lang=s.lang), self.metrics
        )

    def alert_rows(self, item: tuple[str, list[Alert]]) -> TableRows | None:
        alerts = item[1]
        if not alerts:
            return None
        self.metrics.alerts.inc(len(alerts))
        version = self.version_clock()
        # a batch can carry the same alert twice (raised, then resolved): keep the order
        return ("alerts", [a.row(version + i) for i, a in enumerate(alerts)])


class DetectLogic(StatefulLogic[KpiOutput, list[Alert], Detection]):
    """Bytewax adapter for :class:`koxpulse.detection.Detection`.

    Times each alert against the receipt of the batch that produced it: the
    event-to-alert latency of the pipeline itself (a window's wait to close is in
    the window emission delay, delivery in the Alertmanager delivery time).
    """

    def __init__(self, detection: Detection, metrics: Metrics) -> None:
        self.detection = detection
        self.metrics = metrics

    def on_item(self, value: KpiOutput) -> tuple[list[list[Alert]], bool]:
        alerts = self.detection.process(value)
        if alerts:
            self.metrics.observe_alerts(len(alerts), value.received_at_ms)
        return [alerts], StatefulLogic.RETAIN

    def snapshot(self) -> Detection:
        return self.detection


class AggregateLogic(StatefulLogic[DecodedBatch, KpiOutput, KpiAggregator]):
    """Bytewax adapter: one aggregator for the whole stream, flushed at end of input."""

    def __init__(self, agg: KpiAggregator, stages: Stages) -> None:
        self.agg = agg
        self.stages = stages

    def on_item(self, value: DecodedBatch) -> tuple[list[KpiOutput], bool]:
        out = self.agg.process(value)
        self.stages.account(out, self.agg)
        return [out], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[KpiOutput], bool]:
        out = self.agg.flush()
        self.stages.account(out, self.agg)
        return [out], StatefulLogic.RETAIN

    def snapshot(self) -> KpiAggregator:
        return self.agg

"""The KPI dataflow: wiring only. Every step's logic lives in :mod:`koxpulse.stages`.

read → decode ─┬─ ok ─→ lateness (per partition) → aggregate (all partitions) ─┬→ kpi_minute
               └─ errors → dead_letters                                       ├→ late_events
                                                                               └→ events
aggregate → detect → alerts (ClickHouse), kox.alerts (Kafka), Alertmanager
"""

from __future__ import annotations

from typing import Any

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from koxpulse.batches import RawBatch
from koxpulse.stages import Stages
from sinks.bytewax_sink import ClickHouseSink


def build_flow(
    source: Source[RawBatch],
    stages: Stages,
    sink: ClickHouseSink,
    *,
    dead_letter_topic: Sink[Any] | None = None,
    alert_topic: Sink[Any] | None = None,
    alertmanager: Sink[Any] | None = None,
) -> Dataflow:
    flow = Dataflow("koxpulse_kpi")
    raw = op.input("read", flow, source)
    decoded = op.map("decode", raw, stages.decode)

    dead_rows = op.filter_map("dead_letter_rows", decoded, stages.dead_letter_rows)
    if dead_letter_topic is not None:
        dead = op.filter_map("dead_letter_list", decoded, lambda b: b.dead or None)
        op.output("dead_letter_topic", dead, dead_letter_topic)

    by_partition = op.key_on("key_by_partition", decoded, lambda b: b.partition)
    tagged = op.stateful_map("lateness", by_partition, stages.lateness)
    everything = op.key_on("key_all_partitions", op.key_rm("unkey", tagged), lambda _: "all")
    kpis = op.stateful("aggregate", everything, stages.aggregate_logic)

    kpi_rows = op.filter_map("kpi_rows", kpis, stages.kpi_rows)
    late_rows = op.filter_map("late_rows", kpis, stages.late_rows)
    streams = [dead_rows, kpi_rows, late_rows]
    if stages.settings.store_events:
        streams.append(op.filter_map("event_rows", kpis, stages.event_rows))

    if stages.settings.detectors:
        alerts = op.stateful("detect", kpis, stages.detect_logic)
        streams.append(op.filter_map("alert_rows", alerts, stages.alert_rows))
        if alert_topic is not None or alertmanager is not None:
            raised = op.filter_map("alert_list", alerts, lambda kv: kv[1] or None)
            if alert_topic is not None:
                op.output("alert_topic", raised, alert_topic)
            if alertmanager is not None:
                op.output("alertmanager", raised, alertmanager)

    tables = op.merge("tables", *streams)
    keyed = op.key_on("key_sink", tables, lambda _: "clickhouse")
    op.output("clickhouse", keyed, sink)
    return flow

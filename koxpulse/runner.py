"""Run the dataflow for a replay: connect sinks first, run Bytewax, report what happened."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bytewax.testing import run_main
from prometheus_client import start_http_server

from flows.kpi_flow import build_flow
from koxpulse.errors import ConfigError, KoxpulseError
from koxpulse.kafka_config import consumer_config, producer_config
from koxpulse.metrics import Metrics
from koxpulse.progress import Progress
from koxpulse.settings import Settings
from koxpulse.sources.files import FileSource, check_inputs
from koxpulse.sources.kafka import KafkaSource, list_partitions
from koxpulse.stages import Stages
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSender, AlertmanagerSink
from sinks.bytewax_sink import ClickHouseSink
from sinks.clickhouse import ClickHouseTarget, ClickHouseWriter
from sinks.kafka import KafkaTopicSink, alert_messages, dead_letter_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    messages: int
    ok: int
    invalid: int
    duplicates: int
    late: int
    kpi_rows: int
    seconds: float


def clickhouse_target(settings: Settings) -> ClickHouseTarget:
    return ClickHouseTarget.parse(
        settings.clickhouse, settings.database, ca_file=settings.clickhouse_ca or None
    )


def replay(settings: Settings, metrics: Metrics | None = None) -> RunResult:
    """Run the dataflow over the input files (or Kafka) into ClickHouse, flushing at the end."""
    metrics = metrics or Metrics(
        max_regions=settings.metrics_max_regions, max_channels=settings.metrics_max_channels
    )
    clock_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731
    source: FileSource | KafkaSource
    if settings.kafka_bootstrap:
        if settings.input:
            raise ConfigError("give either --input files or --kafka, not both")
        config = consumer_config(settings)
        paths = list_partitions(config, settings.kafka_topics)
        source = KafkaSource(
            config,
            paths,
            batch_size=settings.batch_lines,
            idle_exit_s=settings.idle_exit or None,
            idle_partition_s=settings.idle_partition,
            clock_ms=clock_ms,
            metrics=metrics,
        )
        metrics.messages.labels(source="kafka")  # 0 from the start: "no events" is visible
    else:
        paths = check_inputs(settings.input)
        source = FileSource(paths, batch_lines=settings.batch_lines, clock_ms=clock_ms)
    writer = ClickHouseWriter(
        clickhouse_target(settings),
        batch_rows=settings.sink_batch_rows,
        flush_interval_s=settings.sink_flush_interval,
        metrics=metrics,
    )
    am_config = AlertmanagerConfig.from_settings(settings) if settings.alertmanager_urls else None
    _ = writer.client  # connect and create tables now: a bad DSN fails before any work
    stages = Stages(settings, metrics, expected_partitions=paths)
    topics: dict[str, Any] = {}
    if settings.kafka_bootstrap:
        out_config = producer_config(settings)
        topics["dead_letter_topic"] = KafkaTopicSink(
            out_config, "kox.dead_letters", dead_letter_messages, metrics
        )
        topics["alert_topic"] = KafkaTopicSink(out_config, "kox.alerts", alert_messages, metrics)
    sender = AlertmanagerSender(am_config, metrics) if am_config is not None else None
    if sender is not None:
        topics["alertmanager"] = AlertmanagerSink(sender)
    flow = build_flow(source, stages, ClickHouseSink(writer), **topics)
    started = time.monotonic()
    progress = Progress(metrics) if Progress.wanted(settings.progress) else contextlib.nullcontext()
    with contextlib.ExitStack() as stack:
        stack.callback(writer.close)
        if settings.effective_metrics_port:
            stack.enter_context(serve_metrics(metrics, settings))
        if sender is not None:
            sender.start()
            # at the end of a replay (or a stop) deliver what is queued, for a bounded time
            stack.callback(sender.close)
        try:
            with progress:
                run_main(flow)
        except KoxpulseError:
            raise
        except Exception as exc:
            raise KoxpulseError(f"dataflow failed: {_root_message(exc)}") from exc
    elapsed = time.monotonic() - started
    if settings.metrics_textfile:
        metrics.write_textfile(settings.metrics_textfile)

    def events(outcome: str) -> int:
        return int(metrics.total("koxpulse_events_total", outcome=outcome))

    return RunResult(
        messages=int(metrics.total("koxpulse_messages_read_total")),
        ok=events("ok"),
        invalid=events("invalid"),
        duplicates=events("duplicate"),
        late=events("late"),
        kpi_rows=int(metrics.value("koxpulse_kpi_rows_total")),
        seconds=elapsed,
    )


@contextlib.contextmanager
def serve_metrics(metrics: Metrics, settings: Settings) -> Iterator[int]:
    """Prometheus's HTTP endpoint for the length of the run; yields the port it listens on."""
    port, address = settings.effective_metrics_port, settings.metrics_address
    try:
        server, thread = start_http_server(port, address, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-port {port}: cannot listen on {address}:{port}: {exc.strerror or exc}"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", address, port)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _root_message(exc: BaseException) -> str:
    """Bytewax wraps step errors; surface the innermost message, one line."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner).strip().splitlines()
    return text[-1] if text else inner.__class__.__name__

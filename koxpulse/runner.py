"""Run the dataflow: connect sinks first, run Bytewax, report what happened.

One process runs the flow with ``run_main``; ``--processes N`` starts N such
processes that form one Bytewax cluster (see :mod:`koxpulse.cluster`), and
``--addresses`` with ``--process-id`` makes this process one member of a cluster
that spans hosts. With ``--recovery-dir`` every epoch ends in a snapshot of the
source offsets and the operators' state, so a run that was killed resumes where
its last snapshot left off; sinks replace rows by version, so what is re-emitted
after the resume converges under ``FINAL``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from bytewax.recovery import RecoveryConfig
from bytewax.testing import cluster_main, run_main
from prometheus_client import start_http_server

from flows.kpi_flow import build_flow
from koxpulse.errors import ConfigError, KoxpulseError
from koxpulse.gcpolicy import full_collections_every
from koxpulse.kafka_config import consumer_config, producer_config
from koxpulse.metrics import Metrics
from koxpulse.progress import Progress
from koxpulse.settings import Settings
from koxpulse.sources.files import FileSource, check_inputs
from koxpulse.sources.kafka import KafkaSource, list_partitions
from koxpulse.stages import Stages
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSender, AlertmanagerSink
from sinks.bytewax_sink import ClickHouseSink
from sinks.clickhouse import ClickHouseTarget, ClickHouseWriter, RetryPolicy
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
    stopped: bool = False  # ended by SIGTERM/SIGINT rather than at the end of input


def clickhouse_target(settings: Settings) -> ClickHouseTarget:
    return ClickHouseTarget.parse(
        settings.clickhouse, settings.database, ca_file=settings.clickhouse_ca or None
    )


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """The recovery store, checked: a missing or empty one is a usage error, not a crash."""
    if not settings.recovery_dir:
        return None
    path = Path(settings.recovery_dir)
    if not path.is_dir() or not any(path.glob("part-*.sqlite3")):
        raise ConfigError(
            f"recovery store {path} is not initialised: run "
            f"`koxpulse recovery init --recovery-dir {path}` first"
        )
    return RecoveryConfig(path)


def source_partitions(settings: Settings) -> list[str]:
    """Ids of every source partition; checks inputs (files exist, Kafka is reachable)."""
    if settings.kafka_bootstrap:
        if settings.input:
            raise ConfigError("give either --input files or --kafka, not both")
        return list_partitions(consumer_config(settings), settings.kafka_topics)
    return check_inputs(settings.input)


def prepare_clickhouse(settings: Settings) -> None:
    """Connect once, create the schema, disconnect: a bad DSN fails before any work."""
    writer = ClickHouseWriter(clickhouse_target(settings))
    try:
        _ = writer.client
    finally:
        writer.close()


def replay(settings: Settings, metrics: Metrics | None = None) -> RunResult:
    """Run the dataflow over the input files (or Kafka) into ClickHouse, flushing at the end."""
    if settings.processes > 1 and not settings.addresses:
        from koxpulse.cluster import run_local_cluster

        return run_local_cluster(settings)
    metrics = metrics or Metrics(
        max_regions=settings.metrics_max_regions, max_channels=settings.metrics_max_channels
    )
    clock_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731
    recovery = recovery_config(settings)
    addresses = [a for a in settings.addresses.split(";") if a] if settings.addresses else []
    if addresses and settings.process_id >= len(addresses):
        raise ConfigError(
            f"--process-id {settings.process_id} is not an index into --addresses "
            f"({len(addresses)} addresses)"
        )
    paths = source_partitions(settings)
    source: FileSource | KafkaSource
    if settings.kafka_bootstrap:
        source = KafkaSource(
            consumer_config(settings),
            paths,
            batch_size=settings.batch_lines,
            idle_exit_s=settings.idle_exit or None,
            idle_partition_s=settings.idle_partition,
            clock_ms=clock_ms,
            metrics=metrics,
        )
        metrics.messages.labels(source="kafka")  # 0 from the start: "no events" is visible
        if recovery is None:
            log.warning(
                "Kafka without --recovery-dir: a restart loses the windows that were open "
                "(their minutes would be counted short); use a recovery store in production"
            )
    else:
        source = FileSource(paths, batch_lines=settings.batch_lines, clock_ms=clock_ms)

    writer = ClickHouseWriter(
        clickhouse_target(settings),
        batch_rows=settings.sink_batch_rows,
        flush_interval_s=settings.sink_flush_interval,
        retry=RetryPolicy(
            max_total_s=settings.sink_retry_max, max_backoff_s=settings.sink_backoff_max
        ),
        metrics=metrics,
        background=True,
    )
    am_config = AlertmanagerConfig.from_settings(settings) if settings.alertmanager_urls else None
    owns_sink = settings.process_id == 0
    if owns_sink:
        # Connect and create tables now, on the main thread: a bad DSN fails before any
        # work. In a cluster only process 0 owns the sink (embedded chDB allows one process).
        _ = writer.client
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
    flow = build_flow(source, stages, ClickHouseSink(writer, local=owns_sink), **topics)
    epoch = timedelta(seconds=settings.snapshot_interval)
    started = time.monotonic()
    progress = Progress(metrics) if Progress.wanted(settings.progress) else contextlib.nullcontext()
    stopped = False
    stop = _StopRequest()
    with contextlib.ExitStack() as stack:
        stack.callback(writer.close)
        if settings.effective_metrics_port:
            stack.enter_context(serve_metrics(metrics, settings))
        stack.enter_context(full_collections_every(settings.gc_full_interval))
        if sender is not None:
            sender.start()
            # at the end of a replay (or a stop) deliver what is queued, for a bounded time
            stack.callback(sender.close)
        try:
            with progress, _stop_on_sigterm(stop):
                if addresses:
                    cluster_main(
                        flow,
                        addresses,
                        settings.process_id,
                        epoch_interval=epoch,
                        recovery_config=recovery,
                    )
                else:
                    run_main(flow, epoch_interval=epoch, recovery_config=recovery)
        except KeyboardInterrupt:
            stopped = True
        except KoxpulseError:
            raise
        except BaseException as exc:
            # Bytewax wraps an exception raised inside a step (the signal lands wherever
            # Python code runs) in its own error, or a panic in a callback of its own.
            if not (stop.requested or _caused_by(exc, KeyboardInterrupt)):
                if not isinstance(exc, Exception):
                    raise
                raise KoxpulseError(f"dataflow failed: {_root_message(exc)}") from exc
            stopped = True
    if stopped:
        log.warning("stopped by signal; a resumed run continues from the last snapshot")
    elapsed = time.monotonic() - started
    if settings.metrics_textfile:
        metrics.write_textfile(settings.metrics_textfile)
    return result_from(metrics, elapsed, stopped=stopped)


def result_from(metrics: Metrics, seconds: float, *, stopped: bool = False) -> RunResult:
    def events(outcome: str) -> int:
        return int(metrics.total("koxpulse_events_total", outcome=outcome))

    return RunResult(
        messages=int(metrics.total("koxpulse_messages_read_total")),
        ok=events("ok"),
        invalid=events("invalid"),
        duplicates=events("duplicate"),
        late=events("late"),
        kpi_rows=int(metrics.value("koxpulse_kpi_rows_total")),
        seconds=seconds,
        stopped=stopped,
    )


class _StopRequest:
    requested = False


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def serve_metrics(metrics: Metrics, settings: Settings) -> Iterator[int]:
    """Prometheus's HTTP endpoint for the length of the run; yields the port it listens on.

    In a local cluster process ``i`` listens on the configured port plus ``i``.
    """
    port = settings.effective_metrics_port + (settings.process_id if settings.addresses else 0)
    address = settings.metrics_address
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


@contextlib.contextmanager
def _stop_on_sigterm(stop: _StopRequest) -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C: Bytewax unwinds, the sinks flush on the way out."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.requested = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. a test running the flow in a thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _root_message(exc: BaseException) -> str:
    """Bytewax wraps step errors; surface the innermost message, one line."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner).strip().splitlines()
    return text[-1] if text else inner.__class__.__name__

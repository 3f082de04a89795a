"""Kafka input: one Bytewax source partition per topic partition, read in batches.

Built on confluent-kafka (the client Bytewax's own Kafka connector wraps) but as
a partitioned source that hands out whole batches, because per-message items
cost more than decoding them. Each partition remembers the offset after the
last message it handed out; that offset is the partition's recovery state, so
a resumed run continues exactly there (at-least-once with the idempotent sinks).
Without a snapshot, a partition starts at the consumer group's committed offset,
or at the earliest message when the group has none (contract §1).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from koxpulse.batches import RawBatch
from koxpulse.errors import ConfigError, SourceError
from koxpulse.metrics import Metrics

KafkaState = int  # offset of the next message to read
LAG_EVERY_S = 1.0  # how often a partition updates its consumer-lag gauge


def list_partitions(
    config: Mapping[str, Any], topics: Sequence[str], timeout: float = 10.0
) -> list[str]:
    """``topic:partition`` ids of every partition of ``topics``; fails clearly when unreachable.

    librdkafka retries a failing connection forever and only logs why; the reason
    (refused, TLS handshake, authentication) is caught here so that a wrong CA or a
    broker without TLS stops the run at once with that reason.
    """
    reasons: list[str] = []

    def on_error(err: KafkaError) -> None:
        reasons.append(err.str())

    # librdkafka reports errors through callbacks that only poll() serves, so ask in short
    # rounds and stop at the first security failure instead of waiting out the timeout.
    setup_ms = max(1000, int(timeout * 800))
    consumer = Consumer(
        {
            **config,
            "error_cb": on_error,
            "logger": _Capture(reasons, config.get("logger")),
            "socket.connection.setup.timeout.ms": setup_ms,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                md = consumer.list_topics(timeout=min(1.0, timeout))
                break
            except KafkaException as exc:
                consumer.poll(0.1)
                reason = _best_reason(reasons)
                if _is_security(reason) or time.monotonic() >= deadline:
                    raise ConfigError(
                        f"cannot reach Kafka at {config.get('bootstrap.servers')}: "
                        f"{_explain(reason or exc.args[0].str())}"
                    ) from exc
    finally:
        consumer.close()
    parts: list[str] = []
    for topic in topics:
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(
                f"Kafka topic {topic} does not exist on {config.get('bootstrap.servers')}"
            )
        parts.extend(f"{topic}:{p}" for p in sorted(meta.partitions))
    return parts


class _Capture(logging.Logger):
    """A librdkafka logger that keeps warnings (connection failures are only logged) and
    passes every record on to the configured logger."""

    def __init__(self, sink: list[str], forward: Any) -> None:
        super().__init__("koxpulse.kafka.check")
        self._sink = sink
        self._forward = forward if isinstance(forward, logging.Logger) else None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        if level >= logging.WARNING:
            self._sink.append(text.rsplit("]: ", 1)[-1])  # drop librdkafka's thread prefix
        if self._forward is not None:
            self._forward.log(level, "%s", text)


_SECURITY_WORDS = ("SSL", "certificate", "SASL", "uthentication")


def _best_reason(reasons: list[str]) -> str:
    """The most telling of librdkafka's errors: TLS and SASL failures before generic ones."""
    for word in _SECURITY_WORDS:
        for r in reversed(reasons):
            if word in r:
                return r
    return reasons[-1] if reasons else ""


def _is_security(reason: str) -> bool:
    return any(w in reason for w in _SECURITY_WORDS)


def _explain(reason: str) -> str:
    if "SSL_HANDSHAKE" in reason:
        return reason + " (the broker does not answer TLS: is this a TLS listener?)"
    return reason


class IdleExit:
    """When ``--idle-exit`` ends the partitions of this process: once every one of them has
    been read to its end and none has had a message for ``seconds`` (contract §3).

    One is shared by all the partitions a process reads (all topics), each reporting after
    every read. Until then a quiet partition keeps reading, so a message that comes to a
    sparse topic while others still deliver is read, not left behind by a partition that
    ended on its own silence. The decision is final: every partition ends at its next read.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._reading: set[str] = set()  # partitions not read to their end yet
        # newest message over all partitions (monotonic), or the first read if later
        self._last: float | None = None
        self.ended = False

    def join(self, part: str) -> None:
        with self._lock:
            self._reading.add(part)

    def report(self, part: str, *, caught_up: bool, last_message: float) -> None:
        with self._lock:
            if caught_up:
                self._reading.discard(part)
            else:
                self._reading.add(part)
            if self._last is None or last_message > self._last:
                self._last = last_message

    def over(self, now: float) -> bool:
        """Whether the partitions end now (decides once, for all of them)."""
        with self._lock:
            if (
                not self.ended
                and not self._reading
                and self._last is not None
                and now - self._last >= self.seconds
            ):
                self.ended = True
            return self.ended


class KafkaPartition(StatefulSourcePartition[RawBatch, KafkaState | None]):
    """Reads one topic partition; with ``idle_exit``, ends once every partition sharing it
    has been quiet for that long."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        resume: KafkaState | None,
        *,
        batch_size: int,
        idle_exit: IdleExit | None,
        idle_partition_s: float,
        clock_ms: Callable[[], int],
        metrics: Metrics | None = None,
    ) -> None:
        self._topic = topic
        self._lag = metrics.kafka_lag.labels(topic, str(partition)) if metrics else None
        self._lag_at = 0.0
        self._idle_partition_s = idle_partition_s
        self._idle = False
        self._awake: datetime | None = None
        self._partition = partition
        self._id = f"{topic}:{partition}"
        self._batch_size = batch_size
        self._idle_exit = idle_exit
        self._clock_ms = clock_ms
        self._consumer = Consumer(dict(config))
        if resume is None:
            committed = self._consumer.committed([TopicPartition(topic, partition)], timeout=10)
            offset = (
                committed[0].offset if committed and committed[0].offset >= 0 else OFFSET_BEGINNING
            )
        else:
            offset = resume
        # The snapshot is where a resumed run starts. Before any message was handed out that
        # is where this run started (the committed offset, or the beginning as librdkafka's
        # logical OFFSET_BEGINNING), never "unknown": a stop commits the group's offset, and
        # a resume that fell back to it would skip what was read after the last snapshot.
        self._next: int = offset
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._last_message: float | None = None  # starts at the first poll, not at build time
        # Idle rules apply only once the partition has been read to its end: a slow first
        # fetch must not look like silence (librdkafka reports the end as an EOF event).
        self._caught_up = False
        self._done = False
        if idle_exit is not None:
            idle_exit.join(self._id)

    def next_batch(self) -> list[RawBatch]:
        if self._done:
            raise StopIteration
        if self._idle_exit is not None and self._idle_exit.ended:
            # Another partition found every one quiet: end with it. What came since stays
            # unread, after this partition's offset (snapshot and commit).
            self._done = True
            return [self._batch([], [])]
        msgs = self._consumer.consume(num_messages=self._batch_size, timeout=0)
        values: list[bytes] = []
        offsets: list[int] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._caught_up = True
                    continue
                raise SourceError(f"Kafka error on {self._id}: {err.str()}")
            # librdkafka reports an end only once per offset: what counts is whether the
            # end-of-partition event came after the last message of this batch, not before.
            self._caught_up = False
            values.append(m.value() or b"")
            offsets.append(m.offset() or 0)
        now = time.monotonic()
        if self._lag is not None and now - self._lag_at >= LAG_EVERY_S:
            self._lag_at = now
            self._update_lag(next_offset=offsets[-1] + 1 if offsets else self._next)
        if self._last_message is None:
            self._last_message = now
        idle_for = now - self._last_message
        if values:
            self._last_message = now
            self._next = offsets[-1] + 1
            self._idle = False
            self._awake = None
        if self._idle_exit is not None:
            self._idle_exit.report(
                self._id, caught_up=self._caught_up, last_message=self._last_message
            )
        if not values:
            # nothing prefetched: come back shortly instead of spinning
            self._awake = datetime.now(UTC) + timedelta(milliseconds=50)
            if not self._caught_up:
                return []
            if self._idle_exit is not None and self._idle_exit.over(now):
                self._done = True
            elif not self._idle and idle_for >= self._idle_partition_s:
                # tell the aggregator not to wait for this partition's watermark
                self._idle = True
                return [self._batch([], [], idle=True)]
            else:
                return []
        return [self._batch(values, offsets)]

    def _update_lag(self, next_offset: int | None) -> None:
        """High watermark (as last fetched, no broker round trip) minus the next offset.

        Read to the end, the lag is 0 whatever the broker reports (some brokers, e.g.
        Tansu, report a wrong high watermark; a negative difference is shown as 0).
        """
        assert self._lag is not None
        if self._caught_up:
            self._lag.set(0)
            return
        tp = TopicPartition(self._topic, self._partition)
        try:
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            return
        if high is None or high < 0:
            return
        start = next_offset if next_offset is not None and next_offset >= 0 else max(low, 0)
        self._lag.set(max(0, high - start))

    def _batch(self, values: list[bytes], offsets: list[int], *, idle: bool = False) -> RawBatch:
        return RawBatch(
            partition=self._id,
            source=self._topic,
            position_prefix=f"{self._partition}:",
            positions=offsets,
            messages=values,
            received_at_ms=self._clock_ms(),
            eof=self._done,
            idle=idle,
        )

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> KafkaState | None:
        return self._next

    def close(self) -> None:
        if self._next >= 0:
            # for lag monitoring; the recovery snapshot is what resumes a run
            with contextlib.suppress(KafkaException):
                self._consumer.commit(
                    offsets=[TopicPartition(self._topic, self._partition, self._next)],
                    asynchronous=False,
                )
        self._consumer.close()


class KafkaSource(FixedPartitionedSource[RawBatch, KafkaState | None]):
    """All partitions of the given topics; lateness is judged per partition (contract §1)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        partitions: Sequence[str],
        *,
        batch_size: int,
        idle_exit_s: float | None,
        idle_partition_s: float,
        clock_ms: Callable[[], int],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.idle_partition_s = idle_partition_s
        self.config = dict(config)
        self.partitions = list(partitions)
        self.batch_size = batch_size
        # one for the partitions this process reads: they end together (see IdleExit)
        self.idle_exit = IdleExit(idle_exit_s) if idle_exit_s is not None else None
        self.clock_ms = clock_ms

    def list_parts(self) -> list[str]:
        return self.partitions

    def build_part(
        self, step_id: str, for_part: str, resume_state: KafkaState | None
    ) -> KafkaPartition:
        topic, _, part = for_part.rpartition(":")
        return KafkaPartition(
            self.config,
            topic,
            int(part),
            resume_state,
            batch_size=self.batch_size,
            idle_exit=self.idle_exit,
            idle_partition_s=self.idle_partition_s,
            clock_ms=self.clock_ms,
            metrics=self.metrics,
        )

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
    """``topic:partition`` ids of every partition of ``topics``; fails clearly when unreachable."""
    consumer = Consumer(dict(config))
    try:
        md = consumer.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConfigError(
            f"cannot reach Kafka at {config.get('bootstrap.servers')}: {exc.args[0]}"
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


class KafkaPartition(StatefulSourcePartition[RawBatch, KafkaState | None]):
    """Reads one topic partition; ends after ``idle_exit_s`` without a message (if set)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        resume: KafkaState | None,
        *,
        batch_size: int,
        idle_exit_s: float | None,
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
        self._idle_exit_s = idle_exit_s
        self._clock_ms = clock_ms
        self._consumer = Consumer(dict(config))
        if resume is None:
            committed = self._consumer.committed([TopicPartition(topic, partition)], timeout=10)
            offset = (
                committed[0].offset if committed and committed[0].offset >= 0 else OFFSET_BEGINNING
            )
        else:
            offset = resume
        self._next = resume
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._last_message: float | None = None  # starts at the first poll, not at build time
        # Idle rules apply only once the partition has been read to its end: a slow first
        # fetch must not look like silence (librdkafka reports the end as an EOF event).
        self._caught_up = False
        self._done = False

    def next_batch(self) -> list[RawBatch]:
        if self._done:
            raise StopIteration
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
        else:
            # nothing prefetched: come back shortly instead of spinning
            self._awake = datetime.now(UTC) + timedelta(milliseconds=50)
            if not self._caught_up:
                return []
            if self._idle_exit_s is not None and idle_for >= self._idle_exit_s:
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
        start = next_offset if next_offset is not None else max(low, 0)
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
        # None until a message was handed out: a resumed run then starts where this one did
        return self._next

    def close(self) -> None:
        if self._next is not None:
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
        self.idle_exit_s = idle_exit_s
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
            idle_exit_s=self.idle_exit_s,
            idle_partition_s=self.idle_partition_s,
            clock_ms=self.clock_ms,
            metrics=self.metrics,
        )

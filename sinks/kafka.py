"""Kafka outputs: dead letters to ``kox.dead_letters`` and alerts to ``kox.alerts`` (contract §1).

A small producer per worker; messages are handed to librdkafka in batches and
flushed on every recovery snapshot and at close, so a snapshot never claims a
message that was still only queued in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer

from koxpulse.alerts import Alert
from koxpulse.batches import DeadLetter
from koxpulse.errors import SinkError
from koxpulse.metrics import Metrics
from koxpulse.timeutil import ms_to_iso

Message = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]  # key, value, headers


def dead_letter_messages(letters: Iterable[DeadLetter]) -> list[Message]:
    """The raw message as value; where and why in headers."""
    return [
        (
            None,
            d.raw,
            [
                ("reason", d.reason.encode()),
                ("reason_code", d.code.encode()),
                ("source", d.source.encode()),
                ("position", d.position.encode()),
                ("received_at", ms_to_iso(d.received_at_ms).encode()),
            ],
        )
        for d in letters
    ]


def alert_messages(alerts: Iterable[Alert]) -> list[Message]:
    """The alert as JSON (the columns of an ``alerts`` row), keyed by ``alert_id``."""
    out: list[Message] = []
    for a in alerts:
        doc = {
            "alert_id": a.alert_id,
            "kind": a.kind,
            "severity": a.severity,
            "status": a.status,
            "region": a.region,
            "channel": a.channel,
            "entity_type": a.entity_type,
            "entity_id": a.entity_id,
            "starts_at": ms_to_iso(a.starts_at),
            "ends_at": ms_to_iso(a.ends_at) if a.ends_at is not None else None,
            "value": a.value,
            "baseline": a.baseline,
            "summary": a.summary,
            "details": a.details,
        }
        out.append((a.alert_id.encode(), json.dumps(doc, ensure_ascii=False).encode(), []))
    return out


class _ProducerPartition(StatelessSinkPartition[Any]):
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        encode: Callable[[Any], list[Message]],
        metrics: Metrics | None = None,
    ) -> None:
        self._producer = Producer(dict(config))
        self._topic = topic
        self._encode = encode
        self._errors: list[str] = []
        self._error_count = metrics.sink_errors.labels("kafka", topic) if metrics else None

    def _report(self, err: object, _msg: object) -> None:
        if err is not None:
            self._errors.append(str(err))
            if self._error_count is not None:
                self._error_count.inc()

    def write_batch(self, items: list[Any]) -> None:
        for item in items:
            for key, value, headers in self._encode(item):
                while True:
                    try:
                        self._producer.produce(
                            self._topic, value, key=key, headers=headers, on_delivery=self._report
                        )
                        break
                    except BufferError:  # bounded queue: wait for deliveries (back-pressure)
                        self._producer.poll(0.1)
                    except KafkaException as exc:
                        raise SinkError(f"Kafka produce to {self._topic} failed: {exc}") from exc
        self._producer.poll(0)
        if self._errors:
            raise SinkError(f"Kafka delivery to {self._topic} failed: {self._errors[0]}")

    def close(self) -> None:
        left = self._producer.flush(30)
        if left or self._errors:
            raise SinkError(
                f"{left} messages to {self._topic} not delivered"
                + (f": {self._errors[0]}" if self._errors else "")
            )


class KafkaTopicSink(DynamicSink[Any]):
    """Writes each item, turned into messages by ``encode``, to one topic."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        encode: Callable[[Any], list[Message]],
        metrics: Metrics | None = None,
    ) -> None:
        self._config = dict(config)
        self._topic = topic
        self._encode = encode
        self._metrics = metrics

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self._config, self._topic, self._encode, self._metrics)

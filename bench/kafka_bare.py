"""The Kafka ceiling: one confluent-kafka consumer, orjson parse, count by type.

``python -m bench.kafka_bare BROKER GROUP [TOPIC,...]`` assigns every partition of
the topics (from the beginning) to one consumer with the prefetch settings koxpulse
uses (``koxpulse.kafka_config.consumer_config``), reads in batches until every
partition reported its end, parses each value with orjson and counts by ``type``.
Nothing else: no validation, no dedup, no windows, no writes.

Prints one JSON line: ``messages``, ``seconds`` (first message to last, the steady
read rate), ``seconds_from_start`` (consumer creation to the last message) and
``cpu_seconds``. Ends are counted from end-of-partition events: Tansu reports wrong
high watermarks, so they cannot tell when a partition is read through.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.tansu import TOPICS
from koxpulse.kafka_config import consumer_config
from koxpulse.settings import load


def config(broker: str, group: str) -> dict[str, object]:
    """koxpulse's own consumer configuration (prefetch tuned), without its logger."""
    cfg = consumer_config(load({"kafka_bootstrap": broker, "kafka_group": group}))
    cfg.pop("logger", None)
    return cfg


def main(broker: str, group: str, topics: tuple[str, ...] = TOPICS) -> None:
    started = time.perf_counter()
    cpu = time.process_time()
    consumer = Consumer(config(broker, group))
    md = consumer.list_topics(timeout=10)
    parts = [
        TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in md.topics[t].partitions
    ]
    consumer.assign(parts)
    pending = {(tp.topic, tp.partition) for tp in parts}
    counts: Counter[str] = Counter()
    first: float | None = None
    last = started
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    while pending:
        msgs = consumer.consume(num_messages=2000, timeout=0.5)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((m.topic(), m.partition()))
                    continue
                raise SystemExit(f"kafka error: {err.str()}")
            try:
                doc = loads(m.value() or b"")
                counts[doc.get("type", "?") if isinstance(doc, dict) else "?"] += 1
            except decode_error:
                counts["invalid"] += 1
        if msgs and first is None:
            first = time.perf_counter()
        if msgs:
            last = time.perf_counter()
    consumer.close()
    cpu_seconds = time.process_time() - cpu
    print(
        json.dumps(
            {
                "messages": sum(counts.values()),
                "seconds": last - (first if first is not None else started),
                "seconds_from_start": last - started,
                "cpu_seconds": cpu_seconds,
                "by_type": dict(counts),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else TOPICS)

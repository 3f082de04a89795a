"""``koxpulse produce``: load an event file into Kafka, each event to its type's topic.

Unparseable lines go to ``kox.scans`` (contract §3) so that the pipeline's dead
letters can be exercised end to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
from confluent_kafka import KafkaException, Producer

from koxpulse.errors import KoxpulseError
from koxpulse.kafka_config import producer_config
from koxpulse.settings import Settings
from koxpulse.sources.files import open_lines

TOPIC_BY_TYPE = {
    "scan": "kox.scans",
    "redemption": "kox.redemptions",
    "order": "kox.orders",
    "shipment": "kox.shipments",
}
DEFAULT_TOPIC = "kox.scans"


class _Routing(msgspec.Struct):
    type: object = None
    event_id: object = None


_peek = msgspec.json.Decoder(_Routing)


def route(line: bytes) -> tuple[str, bytes | None]:
    """Topic by event type, key by event_id.

    Keying by event_id puts every redelivery of an event in the same partition, after
    the first copy, so de-duplication never meets the copy before the original.
    """
    try:
        r = _peek.decode(line)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return DEFAULT_TOPIC, None
    topic = TOPIC_BY_TYPE.get(r.type, DEFAULT_TOPIC) if isinstance(r.type, str) else DEFAULT_TOPIC
    key = r.event_id.encode() if isinstance(r.event_id, str) else None
    return topic, key


@dataclass(frozen=True, slots=True)
class ProduceResult:
    messages: int
    by_topic: dict[str, int]
    seconds: float


def produce(settings: Settings, path: str, rate: float | None = None) -> ProduceResult:
    """Send every line of ``path`` (a final empty line excepted) and wait for delivery."""
    producer = Producer(producer_config(settings))
    errors: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    counts: dict[str, int] = {}
    started = time.monotonic()
    n = 0
    with open_lines(path) as f:
        for raw in f:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            topic, key = route(line)
            while True:
                try:
                    producer.produce(topic, line, key=key, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as exc:
                    raise KoxpulseError(f"produce to {topic} failed: {exc.args[0]}") from exc
            producer.poll(0)
            counts[topic] = counts.get(topic, 0) + 1
            n += 1
            if rate:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    remaining = producer.flush(60)
    if remaining or errors:
        raise KoxpulseError(
            f"{remaining} messages not delivered to {settings.kafka_bootstrap}"
            + (f": {errors[0]}" if errors else "")
        )
    return ProduceResult(n, counts, time.monotonic() - started)

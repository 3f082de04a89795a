"""The Quix Streams peer: per-minute event counts per (region, channel) from the same topics.

Runs in its own virtual environment (``.venv/quix``, made by ``make bench``): Quix
Streams 3.x pins confluent-kafka below the version koxpulse uses, so it cannot share
koxpulse's environment without downgrading koxpulse's Kafka client. This file
imports nothing from koxpulse.

``python bench/quix_counts.py BROKER GROUP EXPECTED STATE_DIR`` builds the idiomatic
Quix pipeline for koxpulse's KPI spine: one StreamingDataFrame per contract topic,
concatenated; each value parsed with orjson (invalid JSON and events without region,
channel or ts dropped); the event time taken from ``ts`` (RFC 3339 or epoch ms) with
``set_timestamp``; re-keyed by (region, channel) with ``group_by`` (Quix repartitions
through a Kafka topic it creates); a tumbling one-minute event-time window with 60 s
grace, ``count().final()``. It stops once all ``EXPECTED`` messages were read and every
valid one came back through the repartition topic into the window step, and prints one
JSON line: ``messages``, ``valid``, ``seconds`` (first message read to last event
counted), ``windows`` (closed windows emitted so far), ``windowed`` (events in them:
Quix drops as late an event whose window its partition's watermark has passed, and
with four topics read side by side the watermark runs ahead of slower topics) and
``cpu_seconds``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from typing import Any

import orjson
from quixstreams import Application

TOPICS = ("kox.scans", "kox.redemptions", "kox.orders", "kox.shipments")


def event_time_ms(ts: Any) -> int | None:
    if isinstance(ts, int) and not isinstance(ts, bool):
        return ts
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        return int(dt.timestamp() * 1000)
    return None


def main(broker: str, group: str, expected: int, state_dir: str) -> None:
    app = Application(
        broker_address=broker,
        consumer_group=group,
        auto_offset_reset="earliest",
        # the same prefetch settings as koxpulse and the bare loop
        consumer_extra_config={
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 10,
            "session.timeout.ms": 6000,
        },
        state_dir=state_dir,
        # Quix logs every event it drops as late at WARNING; printing them would slow it down
        loglevel="ERROR",
        use_changelog_topics=False,  # no state recovery: a benchmark, not a deployment
    )
    read = 0
    valid = 0
    counted = 0
    windows = 0
    windowed = 0
    first: float | None = None
    done_at: float | None = None
    started = time.perf_counter()
    cpu = time.process_time()

    def parse(value: bytes) -> dict[str, Any] | None:
        nonlocal read, valid, first
        read += 1
        if first is None:
            first = time.perf_counter()
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        region, channel = doc.get("region"), doc.get("channel")
        t = event_time_ms(doc.get("ts"))
        if not (isinstance(region, str) and isinstance(channel, str)) or t is None:
            return None
        valid += 1
        return {"region": region, "channel": channel, "t": t}

    def count(_value: Any) -> None:
        nonlocal counted, done_at
        counted += 1
        if read >= expected and counted >= valid and done_at is None:
            done_at = time.perf_counter()
            app.stop()

    def window(value: Any) -> None:
        nonlocal windows, windowed
        windows += 1
        windowed += int(value["value"])

    sdfs = [
        app.dataframe(app.topic(t, value_deserializer="bytes", key_deserializer="bytes"))
        for t in TOPICS
    ]
    sdf = sdfs[0]
    for other in sdfs[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(parse).filter(lambda v: v is not None)
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: value["t"])
    sdf = sdf.group_by(lambda v: f"{v['region']}|{v['channel']}", name="region_channel")
    sdf = sdf.update(count)
    sdf = sdf.tumbling_window(duration_ms=60_000, grace_ms=60_000).count().final()
    sdf = sdf.update(window)
    app.run()
    end = done_at if done_at is not None else time.perf_counter()
    print(
        json.dumps(
            {
                "messages": read,
                "valid": valid,
                "counted": counted,
                "windows": windows,
                "windowed": windowed,
                "seconds": end - (first if first is not None else started),
                "seconds_from_start": end - started,
                "cpu_seconds": time.process_time() - cpu,
            }
        )
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

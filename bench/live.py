"""A live event stream at a steady rate, with labelled fraud incidents, into Kafka.

``python -m bench.live BROKER RATE WARMUP SPAN TAIL INCIDENTS OUT [SEED [SHIPMENTS]]``
produces valid contract events stamped with the wall clock (``ts`` in epoch ms, taken
when the event is handed to the producer) for ``WARMUP + SPAN + TAIL`` seconds at
``RATE`` events per second, each to its type's topic keyed by ``event_id`` (as
``koxpulse produce`` does). Background traffic is a steady mix of a campaign day
(scans 60 %, redemptions 25 %, orders 14.75 %, shipments 0.25 % so that every
partition of every topic keeps moving; ``SHIPMENTS`` sets the shipments' share instead,
e.g. 0.00001 for a sparse topic whose partitions stay silent for seconds), a million
users in eight regions with a device each, every code scanned once, scans geolocated
near the user's home: none of it trips a fraud detector, and the detectors that
compare with a usual level are still warming up.

``INCIDENTS`` fraud incidents are spread evenly over the ``SPAN`` seconds after the
warm-up (so their position within the minute is uniform), cycling through four kinds
that fire from the first events:

- ``duplicate_code``: one code scanned by three users, 100 ms apart;
- ``reward_farming``: one user scanning 20 distinct codes, 50 ms apart;
- ``impossible_travel``: one user scanning in Beijing, then 2 s later in Guangzhou;
- ``cross_region_scan``: a batch shipped to CN-SD, then five of its codes scanned in
  CN-GD, 100 ms apart.

The last event of each incident is its trigger: ``OUT`` gets one JSON line per
incident with its kind, entity id and the wall time (seconds) at which the trigger
was produced, then a last line with the achieved rate. The tail keeps traffic flowing
long enough for the watermark to pass every incident (the allowed lateness and a
margin).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer

from bench.detectors import CHANNELS, REGIONS
from koxpulse.produce import TOPIC_BY_TYPE as TOPIC

USERS = 1_000_000
KINDS = ("duplicate_code", "reward_farming", "impossible_travel", "cross_region_scan")


@dataclass
class Incident:
    kind: str
    entity_id: str
    steps: list[tuple[float, dict[str, Any]]]  # (offset after start, event without ts)
    start: float
    trigger_at: float | None = None
    trigger_ts_ms: int | None = None
    done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def incident(kind: str, n: int, start: float) -> Incident:
    p = f"lat{n}"
    steps: list[tuple[float, dict[str, Any]]]
    if kind == "duplicate_code":
        code = f"{p}-code"
        steps = [
            (
                0.1 * i,
                {
                    "type": "scan",
                    "region": "CN-ZJ",
                    "channel": "offline",
                    "code_id": code,
                    "user_id": f"{p}-u{i}",
                    "device_id": f"{p}-d{i}",
                },
            )
            for i in range(3)
        ]
        return Incident(kind, code, steps, start)
    if kind == "reward_farming":
        user = f"{p}-farmer"
        steps = [
            (
                0.05 * i,
                {
                    "type": "scan",
                    "region": "CN-JS",
                    "channel": "ecommerce",
                    "code_id": f"{p}-c{i}",
                    "user_id": user,
                    "device_id": f"{p}-dev",
                },
            )
            for i in range(20)
        ]
        return Incident(kind, user, steps, start)
    if kind == "impossible_travel":
        user = f"{p}-traveller"
        places = (("CN-BJ", 39.9042, 116.4074), ("CN-GD", 23.1291, 113.2644))
        steps = [
            (
                2.0 * i,
                {
                    "type": "scan",
                    "region": region,
                    "channel": "offline",
                    "code_id": f"{p}-c{i}",
                    "user_id": user,
                    "device_id": f"{p}-dev",
                    "lat": lat,
                    "lon": lon,
                },
            )
            for i, (region, lat, lon) in enumerate(places)
        ]
        return Incident(kind, user, steps, start)
    batch = f"{p}-batch"
    steps = [
        (
            0.0,
            {
                "type": "shipment",
                "region": "CN-SD",
                "channel": "offline",
                "batch_id": batch,
                "codes": 500,
            },
        )
    ]
    steps += [
        (
            0.5 + 0.1 * i,
            {
                "type": "scan",
                "region": "CN-GD",
                "channel": "offline",
                "code_id": f"{batch}-{i}",
                "batch_id": batch,
                "user_id": f"{p}-buyer{i}",
                "device_id": f"{p}-bd{i}",
            },
        )
        for i in range(5)
    ]
    return Incident(kind, batch, steps, start)


class Background:
    """Cheap, valid, detector-neutral events."""

    def __init__(self, seed: int, shipment_share: float = 0.0025) -> None:
        self.rng = random.Random(seed)
        self.order_below = 1.0 - shipment_share
        self.n = 0
        self.recent: deque[tuple[str, int]] = deque(maxlen=5000)  # (code, user) of scans

    def next(self, now_ms: int) -> tuple[str, bytes, bytes]:
        rng = self.rng
        self.n += 1
        n = self.n
        x = rng.random()
        k = rng.randrange(USERS)
        region, lat, lon = REGIONS[k & 7]
        channel = CHANNELS[k % 3]
        eid = f"bg{n}"
        doc: dict[str, Any]
        if x < 0.60 or (x < 0.85 and not self.recent):
            code = f"bc{n}"
            doc = {
                "event_id": eid,
                "type": "scan",
                "ts": now_ms,
                "region": region,
                "channel": channel,
                "code_id": code,
                "user_id": f"u{k}",
                "device_id": f"d{k}",
            }
            if n & 1:
                doc["lat"] = round(lat + (k % 1000) * 1e-4, 5)
                doc["lon"] = round(lon + (k % 997) * 1e-4, 5)
            self.recent.append((code, k))
        elif x < 0.85:
            code, k = self.recent.popleft()
            region, _, _ = REGIONS[k & 7]
            doc = {
                "event_id": eid,
                "type": "redemption",
                "ts": now_ms,
                "region": region,
                "channel": CHANNELS[k % 3],
                "code_id": code,
                "user_id": f"u{k}",
                "device_id": f"d{k}",
                "amount": 1.88,
            }
        elif x < self.order_below:
            doc = {
                "event_id": eid,
                "type": "order",
                "ts": now_ms,
                "region": region,
                "channel": channel,
                "order_id": f"o{n}",
                "user_id": f"u{k}",
                "amount": 12.5,
            }
        else:
            doc = {
                "event_id": eid,
                "type": "shipment",
                "ts": now_ms,
                "region": region,
                "channel": channel,
                "batch_id": f"bb{n}",
                "codes": 1000,
            }
        return TOPIC[doc["type"]], eid.encode(), orjson.dumps(doc)


def main(
    broker: str,
    rate: float,
    warmup: float,
    span: float,
    tail: float,
    incidents: int,
    out: str,
    seed: int = 7,
    shipment_share: float = 0.0025,
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": broker,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )
    bg = Background(seed, shipment_share)
    total = warmup + span + tail
    plan = [
        incident(KINDS[i % len(KINDS)], i, warmup + span * (i + 0.5) / incidents)
        for i in range(incidents)
    ]
    pending = sorted(
        ((inc.start + off, j, inc, ev) for inc in plan for j, (off, ev) in enumerate(inc.steps)),
        key=lambda x: (x[0], x[1]),
    )
    queue = deque(pending)
    clock = time.time
    start = clock()
    sent = 0
    seq = 0
    while True:
        now = clock()
        elapsed = now - start
        if elapsed >= total:
            break
        due = int(elapsed * rate)
        if sent >= due:
            time.sleep(0.001)
            continue
        now_ms = int(now * 1000)
        for _ in range(min(due - sent, 5000)):
            topic, key, value = bg.next(now_ms)
            while True:
                try:
                    producer.produce(topic, value, key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        while queue and queue[0][0] <= elapsed:
            _, _, inc, ev = queue.popleft()
            seq += 1
            at = clock()
            doc = {"event_id": f"inc{seq}", "ts": int(at * 1000), **ev}
            producer.produce(TOPIC[doc["type"]], orjson.dumps(doc), key=doc["event_id"].encode())
            inc.done += 1
            if inc.done == len(inc.steps):
                inc.trigger_at = at
                inc.trigger_ts_ms = doc["ts"]
            sent += 1
        producer.poll(0)
    producer.flush(30)
    seconds = clock() - start
    with open(out, "w", encoding="utf-8") as f:
        for inc in plan:
            f.write(
                json.dumps(
                    {
                        "kind": inc.kind,
                        "entity_id": inc.entity_id,
                        "trigger_at": inc.trigger_at,
                        "trigger_ts_ms": inc.trigger_ts_ms,
                    }
                )
                + "\n"
            )
        f.write(json.dumps({"sent": sent, "seconds": seconds, "rate": sent / seconds}) + "\n")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(
        a[0],
        float(a[1]),
        float(a[2]),
        float(a[3]),
        float(a[4]),
        int(a[5]),
        a[6],
        *(int(x) for x in a[7:8]),
        *(float(x) for x in a[8:9]),
    )

"""``--idle-exit`` on a live Kafka run against the real broker (Tansu): the run ends only
once every partition it reads has been quiet for that long.

A sparse topic (here shipments: one message, then another after a silence longer than
the idle-exit time) beside a busy one (scans, a steady flow) must not lose its late
message: a partition that is quiet while others still deliver keeps reading.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.conftest import KOXPULSE, ROOT
from tests.integration.conftest import create_topic, free_port
from tests.integration.test_metrics_endpoint import scrape
from tests.integration.test_replay_exact import query

IDLE_EXIT = 2.0
_ids = itertools.count()


def _event(kind: str, n: int) -> bytes:
    base = {"event_id": f"{kind}-{n}", "type": kind, "ts": time.time_ns() // 1_000_000}
    if kind == "scan":
        extra = {"code_id": f"c{n}", "user_id": f"u{n % 7}"}
    else:
        extra = {"batch_id": f"b{n}", "codes": 100}
    return json.dumps({**base, "region": "CN-SD", "channel": "offline", **extra}).encode()


class Scans(threading.Thread):
    """Scans to every partition of ``topic``, one every 0.1 s, until stopped."""

    def __init__(self, broker: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
        self.topic, self.partitions = topic, partitions
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.producer.produce(
                self.topic, _event("scan", self.sent), partition=self.sent % self.partitions
            )
            self.sent += 1
            self.producer.poll(0)
            self.stopped.wait(0.1)

    def stop(self) -> int:
        self.stopped.set()
        self.join(10)
        assert self.producer.flush(10) == 0
        return self.sent


def _ok(sample: dict[str, float], kind: str) -> float:
    return sample.get(f'koxpulse_events_total{{outcome="ok",type="{kind}"}}', 0.0)


@pytest.mark.parametrize("idle_partition", ["600", "0.5"])
def test_a_quiet_partition_keeps_reading_while_others_deliver(
    broker: str, tmp_path: Path, idle_partition: str
) -> None:
    # With --idle-partition 0.5 the shipments partition also stops holding the watermark
    # while it is quiet; its late message is still on time (lateness 60 s) and counted.
    run_id = next(_ids)
    scans_topic, ships_topic = f"t.idle.scans.{run_id}", f"t.idle.shipments.{run_id}"
    create_topic(broker, scans_topic, partitions=2)
    create_topic(broker, ships_topic, partitions=2)  # partition 1 never gets a message
    ships = Producer({"bootstrap.servers": broker})
    ships.produce(ships_topic, _event("shipment", 1), partition=0)
    assert ships.flush(10) == 0

    port = free_port()
    dsn = f"chdb://{tmp_path / 'ch'}"
    proc = subprocess.Popen(
        [
            *KOXPULSE, "run", "--kafka", broker,
            "--kafka-topics", f"{scans_topic},{ships_topic}",
            "--kafka-group", f"t-idle-{run_id}",
            "--idle-exit", str(IDLE_EXIT), "--idle-partition", idle_partition,
            "--detectors", "off", "--clickhouse", dsn,
            "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
            "--metrics-textfile", str(tmp_path / "final.prom"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    scans = Scans(broker, scans_topic, partitions=2)
    scans.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the first shipment was never counted"
            try:
                if _ok(scrape(port), "shipment") == 1 and _ok(scrape(port), "scan") > 0:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        # the shipments partition is now quiet for well over the idle-exit time...
        time.sleep(2 * IDLE_EXIT + 1)
        assert proc.poll() is None, "the run ended while scans were still arriving"
        # ...and speaks again while scans keep flowing
        ships.produce(ships_topic, _event("shipment", 2), partition=0)
        assert ships.flush(10) == 0
        time.sleep(1.5)
        n_scans = scans.stop()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        scans.stopped.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    final = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in (tmp_path / "final.prom").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert _ok(final, "shipment") == 2, "the shipment after the silence was lost"
    assert final['koxpulse_messages_read_total{source="kafka"}'] == n_scans + 2
    assert _ok(final, "scan") == n_scans
    assert final["koxpulse_late_events_total"] == 0
    rows = query(dsn, "SELECT type, count() AS n FROM koxpulse.events FINAL GROUP BY type")
    assert {r["type"]: int(r["n"]) for r in rows} == {"scan": n_scans, "shipment": 2}
    kpis = query(dsn, "SELECT sum(scans) AS scans FROM koxpulse.kpi_minute FINAL")
    assert int(kpis[0]["scans"]) == n_scans

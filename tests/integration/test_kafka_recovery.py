"""Crash recovery and scale-out against a real Kafka-protocol broker (Tansu).

A labelled stream goes to 3-partition topics; the reference is a run that never
stopped. The recovery test stops the pipeline with SIGTERM once and SIGKILL three
times while the stream is arriving and restarts it on the same recovery store; the
scale-out test runs two cooperating processes. Both must leave exactly the reference
tables under FINAL.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KOXPULSE, ROOT, run_cli
from tests.integration.tables import read_tables
from tests.integration.test_kafka_replay import late_free_stream

RUN_ARGS = ("--idle-exit", "4", "--idle-partition", "600", "--progress", "on")


@pytest.fixture
def produced(fresh_broker: str, tmp_path: Path) -> tuple[str, Path]:
    _, sent = late_free_stream(tmp_path, hours=10, seed=11, scale=0.25, incidents=True)
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


def split_lines(src: Path, parts: int, out: Path) -> list[Path]:
    lines = src.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    paths = []
    for i in range(parts):
        p = out / f"part-{i}.jsonl"
        p.write_bytes(b"".join(lines[i * size : (i + 1) * size]))
        paths.append(p)
    return paths


def wait_for_progress(p: subprocess.Popen[str], log: list[str], timeout: float = 90) -> None:
    """Read the run's stderr until its first progress line: the flow is running."""
    assert p.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = p.stderr.read(32)
        if not chunk:
            raise AssertionError("the run ended before it started reading: " + "".join(log))
        log.append(chunk)
        if "read " in "".join(log[-8:]):
            return
    raise AssertionError("no progress line from the run")


def test_sigterm_then_sigkill_three_times_then_resume_gives_the_crash_free_tables(
    fresh_broker: str, tmp_path: Path
) -> None:
    """The stream arrives in parts while the pipeline runs, as in production, and each
    run is stopped at a random moment while a part is still arriving: so every stop
    lands in the middle of work, however fast the machine is."""
    broker = fresh_broker
    _, sent = late_free_stream(tmp_path, hours=10, seed=11, scale=0.25, incidents=True)
    parts = split_lines(sent, 5, tmp_path)

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
        "200",
    ]
    rng = random.Random(5)
    # a clean stop first (SIGTERM: sinks flushed, exit 0), then three crashes
    for part, sig in zip(
        parts, [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL], strict=False
    ):
        p = subprocess.Popen(
            args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        log: list[str] = []
        wait_for_progress(p, log)
        producer = subprocess.Popen(
            [*KOXPULSE, "produce", "--input", str(part), "--kafka", broker, "--rate", "2500"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(0.4, 1.2))  # the part takes about 1.4 s to arrive
        assert p.poll() is None, "the run ended while its input was still arriving"
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        log.append(err)
        assert producer.wait(timeout=60) == 0, producer.stderr.read() if producer.stderr else ""
        if sig == signal.SIGTERM:
            assert p.returncode == 0, "".join(log)[-2000:]
            assert "stopped; sinks flushed" in "".join(log)
            assert "Traceback" not in "".join(log)
        else:
            assert p.returncode == -signal.SIGKILL
    # the last part arrives while the final run is up; it resumes and finishes
    p = subprocess.Popen(
        args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    log = []
    wait_for_progress(p, log)
    produced = run_cli("produce", "--input", str(parts[-1]), "--kafka", broker)
    assert produced.returncode == 0, produced.stderr
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, ("".join(log) + err)[-3000:]
    # it resumed from a snapshot instead of reading everything again
    assert 0 < read_count(err) < sent.read_bytes().count(b"\n")

    # the reference reads the same topics, now complete, in one run that never stopped
    reference = f"chdb://{tmp_path / 'ref'}"
    kafka_run(broker, reference, "--kafka-group", "reference")
    want = read_tables(reference)
    assert want["alerts"], "the stream should raise alerts"
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

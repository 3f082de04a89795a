"""``--processes N``: one Bytewax cluster of N processes on this machine.

Each process runs the same flow with ``--addresses`` and its own ``--process-id``;
Bytewax spreads the source partitions (one per Kafka partition or file) over the
processes and routes every keyed step to one worker, so per-key state stays in
one place however many processes read. The parent only prepares (schema, inputs),
starts the members, forwards SIGTERM/SIGINT, and merges their metrics.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from koxpulse.errors import KoxpulseError
from koxpulse.metrics import Metrics
from koxpulse.settings import OPTIONS, TUNING_BY_FIELD, Settings

if TYPE_CHECKING:
    from koxpulse.runner import RunResult


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the ``KOXPULSE_*`` variable that reproduces it in a child."""
    env: dict[str, str] = {}
    for opt in OPTIONS:
        value = getattr(settings, opt.field)
        if value is not None:  # None: "not set", the child's own default applies
            env[opt.env] = _text(value)
    for field, value in settings.tuning:
        env[TUNING_BY_FIELD[field].env] = _text(value)
    return env


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def run_local_cluster(settings: Settings) -> RunResult:
    from koxpulse.runner import prepare_clickhouse, result_from, source_partitions

    source_partitions(settings)  # inputs exist, Kafka is reachable: fail before starting
    prepare_clickhouse(settings)
    n = settings.processes
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(n))
    base = {k: v for k, v in os.environ.items() if not k.startswith("KOXPULSE_")}
    with tempfile.TemporaryDirectory(prefix="koxpulse-cluster-") as tmp:
        files = [Path(tmp) / f"metrics-{i}.prom" for i in range(n)]
        procs: list[subprocess.Popen[bytes]] = []
        started = time.monotonic()
        for i in range(n):
            env = {
                **base,
                **settings_env(settings),
                "KOXPULSE_PROCESSES": "1",
                "KOXPULSE_ADDRESSES": addresses,
                "KOXPULSE_PROCESS_ID": str(i),
                "KOXPULSE_METRICS_TEXTFILE": str(files[i]),
                "KOXPULSE_PROGRESS": "off",
            }
            procs.append(subprocess.Popen([sys.executable, "-m", "koxpulse.cli", "run"], env=env))
        stopped = False

        def forward(signum: int, _frame: object) -> None:
            nonlocal stopped
            stopped = True
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            codes = _wait_all(procs)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if any(codes):
            raise KoxpulseError(
                f"{sum(1 for c in codes if c)} of {n} processes failed (exit codes {codes}); "
                "their errors are above"
            )
        metrics = merge_textfiles([f for f in files if f.exists()])
        if settings.metrics_textfile:
            metrics.write_textfile(settings.metrics_textfile)
        return result_from(metrics, time.monotonic() - started, stopped=stopped)


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every member; when one fails, the cluster cannot finish: stop the rest."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [int(c) for c in codes if c is not None]
        if any(c not in (None, 0) for c in codes):
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            return [int(p.wait()) for p in procs]
        time.sleep(0.1)


def merge_textfiles(paths: list[Path]) -> Metrics:
    """One registry from the members' textfiles: counters summed, gauges at their maximum."""
    merged = Metrics()
    metrics = {
        m._name: m  # type: ignore[attr-defined]
        for m in vars(merged).values()
        if hasattr(m, "_name") and hasattr(m, "_type")
    }
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for path in paths:
        for family in text_string_to_metric_families(path.read_text()):
            metric = metrics.get(family.name)
            if metric is None or family.type not in ("counter", "gauge"):
                continue
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (family.name, tuple(sorted(sample.labels.items())))
                if family.type == "counter":
                    counters[key] = counters.get(key, 0.0) + sample.value
                else:
                    gauges[key] = max(gauges.get(key, sample.value), sample.value)
    for (name, labels), value in counters.items():
        m = metrics[name]
        (m.labels(**dict(labels)) if labels else m).inc(value)
    for (name, labels), value in gauges.items():
        m = metrics[name]
        (m.labels(**dict(labels)) if labels else m).set(value)
    return merged

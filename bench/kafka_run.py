"""One ``koxpulse run --kafka`` as a user starts it, timed from outside through its metrics.

The process is the real command line (``--processes N`` included). While it runs its
Prometheus endpoint (one per process: port P, P + 1, ...) is read;
``koxpulse_messages_read_total`` says when the first message was decoded and the sum of
``koxpulse_events_total`` (every outcome: ok, duplicate, late, invalid) when the last one
went through the aggregation step. Each moment is taken half-way between the scrape that
saw it and the one before. A scrape renders every metric inside koxpulse (a few ms of
its CPU), so reads are dense (every ``fine`` s) only around the two moments that are
timed, before the first message and once the rest should take less than 1.5 s at the
rate seen so far, and sparse (every ``coarse`` s) in between: at most ``fine`` / 2 of
error at each end, and about one scrape per ``coarse`` seconds of work.
``--idle-exit`` then waits its idle seconds and the run flushes every window and the
sinks; that tail is reported separately (wall clock minus the idle wait), never in the
headline rate.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.tansu import free_port, free_port_pair


def metrics_args(port: int, textfile: Path) -> list[str]:
    """Flags of a benchmarked ``koxpulse run``: metrics on loopback and in a file, no bar."""
    return [
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
        "--metrics-textfile",
        str(textfile),
        "--progress",
        "off",
    ]


KOXPULSE = [sys.executable, "-m", "koxpulse.cli"]


def scrape(port: int, timeout: float = 1.0) -> tuple[float, float] | None:
    """(messages read, events through aggregation) from one process's endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    messages = events = 0.0
    for line in text.splitlines():
        if line.startswith("koxpulse_messages_read_total"):
            messages += float(line.rsplit(" ", 1)[1])
        elif line.startswith("koxpulse_events_total{"):
            events += float(line.rsplit(" ", 1)[1])
    return messages, events


def run_koxpulse_kafka(
    broker: str,
    group: str,
    expected: int,
    workdir: Path,
    *,
    processes: int = 1,
    detectors: bool = False,
    idle_exit: float = 2.0,
    fine: float = 0.05,
    coarse: float = 0.5,
    extra: tuple[str, ...] = (),
    timeout: float = 600.0,
) -> dict[str, Any]:
    port = free_port_pair() if processes > 1 else free_port()
    ports = [port + i for i in range(processes)]
    chdb = workdir / f"chdb-{group}"
    textfile = workdir / f"metrics-{group}.prom"
    log = workdir / f"koxpulse-{group}.log"
    cmd = [
        *KOXPULSE,
        "run",
        "--kafka",
        broker,
        "--kafka-group",
        group,
        "--idle-exit",
        str(idle_exit),
        "--idle-partition",
        "600",
        "--clickhouse",
        f"chdb://{chdb}",
        "--processes",
        str(processes),
        "--detectors",
        "on" if detectors else "off",
        *metrics_args(port, textfile),
        *extra,
    ]
    first: float | None = None
    done: float | None = None
    before = started = time.perf_counter()
    interval = fine
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                now_before = time.perf_counter()
                seen = [scrape(p) for p in ports]
                now = time.perf_counter()
                if all(s is not None for s in seen):
                    messages = sum(s[0] for s in seen if s is not None)
                    events = sum(s[1] for s in seen if s is not None)
                    if first is None and messages > 0:
                        first = (before + now) / 2
                    if done is None and events >= expected:
                        done = (before + now) / 2
                    before = now_before
                    interval = fine
                    if first is not None and done is None and events > 0:
                        rate = events / max(now - first, 1e-3)
                        if (expected - events) / rate > 1.5:
                            interval = coarse
                    elif done is not None:
                        interval = coarse
                if now - started > timeout:
                    raise SystemExit(f"bench: koxpulse run ({group}) did not finish in {timeout} s")
                time.sleep(max(0.0, interval - (time.perf_counter() - now_before)))
        finally:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(
            f"bench: koxpulse run ({group}) exited {proc.returncode}: "
            + log.read_text(errors="replace")[-800:]
        )
    totals = textfile_totals(textfile)
    shutil.rmtree(chdb, ignore_errors=True)
    if totals["messages"] != expected:
        raise SystemExit(f"bench: koxpulse ({group}) read {totals['messages']:.0f} of {expected}")
    if first is None or done is None:
        raise SystemExit(f"bench: koxpulse ({group}) finished before its metrics were read")
    seconds = max(done - first, fine)
    tail = ended - started - idle_exit
    return {
        "messages": expected,
        "seconds": seconds,
        "events_per_s": expected / seconds,
        "first_message_after_s": first - started,
        "wall_s": ended - started,
        "wall_minus_idle_s": tail,
        "events_per_s_incl_start_and_flush": expected / tail,
        "alerts": totals["alerts"],
    }


def textfile_totals(path: Path) -> dict[str, float]:
    out = {"messages": 0.0, "alerts": 0.0}
    for line in path.read_text().splitlines():
        if line.startswith("koxpulse_messages_read_total"):
            out["messages"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("koxpulse_alert_updates_total"):
            out["alerts"] += float(line.rsplit(" ", 1)[1])
    return out

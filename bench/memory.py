"""Peak RSS of ``koxpulse run --input`` as distinct users, codes and event ids grow.

A cheap synthetic stream (not the simulator, to keep it fast) that is valid per the
contract: every user appears once, with a scan of a code of its own (half of the scans
geolocated near one of eight regional centres, a device of its own, codes of 1,000-code
batches shipped beforehand); a quarter of the users redeem that code a few minutes
later and a tenth place an order. So ``users`` distinct users and codes, about
``1.35 × users`` distinct event ids, arriving at ``EVENTS_PER_S`` of event time (a
busy campaign day). Nothing repeats, so every id is new state for the dedup memory,
the KPI windows' distinct counts, the repeat-buyer history and the fraud detectors.

Each size is its own ``koxpulse run --input`` (detectors on, events stored, embedded
ClickHouse) and its peak RSS is the kernel's ``ru_maxrss`` of that process (see
:func:`run_memory`); the largest run is also sampled every 0.25 s (``VmRSS`` from
``/proc``, messages read from its metrics endpoint) to show the curve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.tansu import free_port

START_MS = 1_795_190_400_000  # 2026-11-21T00:00:00+08:00
EVENTS_PER_S = 1000
REGIONS = ("CN-SD", "CN-GD", "CN-ZJ", "CN-JS", "CN-SC", "CN-BJ", "CN-SH", "CN-HB")
CENTRES = (
    (36.65, 117.12),
    (23.13, 113.26),
    (30.27, 120.16),
    (32.06, 118.80),
    (30.57, 104.07),
    (39.92, 116.44),
    (31.22, 121.54),
    (30.59, 114.31),
)
CHANNELS = ("ecommerce", "offline", "community")
BATCH = 1000


def write_stream(path: Path, users: int) -> int:
    """Write the stream for ``users`` distinct users; returns the number of events."""
    step = 1000 * 1.35 / EVENTS_PER_S  # ms of event time per user (1.35 events each)
    n = 0
    pending: list[tuple[int, bytes]] = []  # (ts, line) of redemptions, in time order
    head = 0
    with path.open("wb", buffering=1 << 20) as f:
        w = f.write
        for i in range(users):
            ts = START_MS + int(i * step)
            while head < len(pending) and pending[head][0] <= ts:
                w(pending[head][1])
                head += 1
                n += 1
            if head > 100_000:
                del pending[:head]
                head = 0
            # a batch is shipped to one region and channel: its codes are scanned there
            b = i // BATCH
            region = REGIONS[b & 7]
            channel = CHANNELS[b % 3]
            if i % BATCH == 0:
                w(
                    b'{"event_id":"s%d","type":"shipment","ts":%d,"region":"%s",'
                    b'"channel":"%s","batch_id":"B%d","codes":%d}\n'
                    % (b, ts - 1, region.encode(), channel.encode(), b, BATCH)
                )
                n += 1
            geo = b""
            if i & 8:
                lat, lon = CENTRES[b & 7]
                geo = b',"lat":%.5f,"lon":%.5f' % (lat + (i % 997) * 1e-4, lon + (i % 991) * 1e-4)
            w(
                b'{"event_id":"e%d","type":"scan","ts":%d,"region":"%s","channel":"%s",'
                b'"code_id":"C%d","user_id":"U%d","batch_id":"B%d","device_id":"D%d"%s}\n'
                % (i, ts, region.encode(), channel.encode(), i, i, b, i, geo)
            )
            n += 1
            if i % 4 == 0:
                pending.append(
                    (
                        ts + 180_000,
                        b'{"event_id":"r%d","type":"redemption","ts":%d,"region":"%s",'
                        b'"channel":"%s","code_id":"C%d","user_id":"U%d","device_id":"D%d",'
                        b'"amount":1.88}\n'
                        % (i, ts + 180_000, region.encode(), channel.encode(), i, i, i),
                    )
                )
            if i % 10 == 5:
                w(
                    b'{"event_id":"o%d","type":"order","ts":%d,"region":"%s","channel":"%s",'
                    b'"order_id":"O%d","user_id":"U%d","amount":12.5}\n'
                    % (i, ts + 1, region.encode(), channel.encode(), i, i)
                )
                n += 1
        for _, line in pending[head:]:
            w(line)
            n += 1
    return n


def _status_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, from /proc."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        return None
    return (rss, hwm) if rss is not None and hwm is not None else None


def _child(pid: int) -> int | None:
    """The (only) child of ``pid``: koxpulse under /usr/bin/time."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def _messages(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("koxpulse_messages_read_total"):
                    return float(line.rsplit(" ", 1)[1])
    except OSError:
        return None
    return None


TIME = "/usr/bin/time"


def run_memory(
    path: Path, workdir: Path, *, sample: bool, detectors: bool = True
) -> dict[str, Any]:
    """Peak RSS of one ``koxpulse run --input``.

    The peak is GNU time's ``%M`` (the process's ``ru_maxrss``), taken through
    ``/usr/bin/time`` rather than from this process's own ``wait4``: Linux carries
    ``ru_maxrss`` across ``execve`` from the forked copy of the parent, so a child of a
    large parent (this harness, after simulating the workload) would report at least
    the parent's size. Without ``/usr/bin/time`` the peak is the largest ``VmHWM`` seen
    while sampling (the last quarter second before exit unseen).
    """
    chdb = workdir / f"chdb-mem-{path.stem}"
    port = free_port()
    maxrss = workdir / f"maxrss-{path.stem}.txt"
    log = workdir / f"memory-{path.stem}.log"
    cmd = [
        sys.executable,
        "-m",
        "koxpulse.cli",
        "run",
        "--input",
        str(path),
        "--clickhouse",
        f"chdb://{chdb}",
        "--detectors",
        "on" if detectors else "off",
        "--progress",
        "off",
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
    ]
    timed = os.access(TIME, os.X_OK)
    if timed:
        cmd = [TIME, "-f", "%M", "-o", str(maxrss), *cmd]
    started = time.perf_counter()
    curve: list[tuple[float, float, int]] = []  # (seconds, messages read, RSS KiB)
    hwm = 0
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            pid = _child(proc.pid) if timed else proc.pid
            st = _status_kib(pid) if pid is not None else None
            if st is not None:
                hwm = max(hwm, st[1])
                if sample:
                    messages = _messages(port)
                    if messages is not None:
                        curve.append((round(time.perf_counter() - started, 2), messages, st[0]))
            time.sleep(0.25)
    seconds = time.perf_counter() - started
    shutil.rmtree(chdb, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: memory run failed: {log.read_text(errors='replace')[-800:]}")
    peak_kib = int(maxrss.read_text().split()[-1]) if timed else hwm
    return {
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_from": "GNU time %M (ru_maxrss)" if timed else "largest sampled VmHWM",
        "sampled_hwm_mib": round(hwm / 1024, 1),
        "seconds": round(seconds, 1),
        "curve": [
            {"seconds": t, "messages": int(m), "rss_mib": round(r / 1024, 1)}
            for t, m, r in curve[:: max(1, len(curve) // 100)]  # at most ~100 points
        ],
    }


def bench_memory(
    workdir: Path,
    sizes: tuple[int, ...] = (100_000, 1_000_000, 5_000_000),
    *,
    attribution: tuple[int, ...] = (1_000_000, 5_000_000),
) -> list[dict[str, Any]]:
    """One run per size (detectors on), then the ``attribution`` sizes with detectors off."""
    plan = [(users, True) for users in sizes] + [(users, False) for users in attribution]
    out = []
    for users, detectors in plan:
        path = workdir / f"mem-{users}.jsonl"
        t = time.perf_counter()
        events = write_stream(path, users)
        made = time.perf_counter() - t
        r = run_memory(path, workdir, sample=users == max(sizes), detectors=detectors)
        path.unlink()
        out.append(
            {
                "distinct_users": users,
                "distinct_codes": users,
                "events": events,
                "detectors": detectors,
                "generated_in_s": round(made, 1),
                **r,
            }
        )
    return out

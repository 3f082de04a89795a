"""Kafka throughput side by side: bare consume loop, koxpulse 1 and 2 processes, Quix Streams.

One Tansu broker, started here, holds the workload once (``koxpulse produce``, each
event to its type's topic, 3 partitions each). Every reader then reads all of it with
a consumer group of its own, alternating, ``repeats`` times:

- the bare loop (``bench.kafka_bare``): one consumer, orjson, count by type;
- ``koxpulse run --kafka`` with 1 and 2 processes, detectors off and on
  (``bench.kafka_run``);
- once, Quix Streams doing the same windowed counts (``bench/quix_counts.py``, in its
  own environment).

Rates are events per second from the first message read to the last one processed;
ratios compare medians.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.kafka_run import run_koxpulse_kafka
from bench.tansu import tansu

QUIX_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "quix" / "bin" / "python"
CONFIGS = (
    ("koxpulse_1p_detectors_off", 1, False),
    ("koxpulse_1p_detectors_on", 1, True),
    ("koxpulse_2p_detectors_off", 2, False),
    ("koxpulse_2p_detectors_on", 2, True),
)


def produce(broker: str, path: Path) -> tuple[int, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "koxpulse.cli", "produce", "--input", str(path), "--kafka", broker],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: koxpulse produce failed: {proc.stderr.strip()[-500:]}")
    m = re.search(r"produced ([\d,]+) messages in ([\d.]+) s", proc.stdout)
    if m is None:
        raise SystemExit(f"bench: unexpected koxpulse produce output: {proc.stdout!r}")
    return int(m.group(1).replace(",", "")), float(m.group(2))


def bare(broker: str, group: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.kafka_bare", broker, group],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: bare Kafka loop failed: {proc.stderr.strip()[-500:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["events_per_s"] = r["messages"] / r["seconds"]
    return dict(r)


def quix(broker: str, group: str, expected: int, workdir: Path) -> dict[str, Any]:
    """Quix Streams' run, or why there is none."""
    if not QUIX_PYTHON.exists():
        return {"status": "not installed", "why": f"{QUIX_PYTHON} missing (make bench installs it)"}
    script = Path(__file__).with_name("quix_counts.py")
    try:
        proc = subprocess.run(
            [
                str(QUIX_PYTHON),
                "-W",
                "ignore",
                str(script),
                broker,
                group,
                str(expected),
                str(workdir / "quix-state"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "why": "did not finish within 600 s"}
    if proc.returncode != 0:
        return {"status": "failed", "why": proc.stderr.strip()[-600:]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["messages"] != expected:
        return {"status": "failed", "why": f"read {r['messages']} of {expected} messages"}
    r["events_per_s"] = r["messages"] / r["seconds"]
    r["status"] = "ok"
    try:
        r["version"] = subprocess.run(
            [str(QUIX_PYTHON), "-c", "import quixstreams; print(quixstreams.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError:
        r["version"] = None
    return dict(r)


def med(runs: list[dict[str, Any]], key: str = "events_per_s") -> float:
    return float(statistics.median(r[key] for r in runs))


def bench_kafka(
    workload: Path,
    workdir: Path,
    repeats: int,
    *,
    configs: tuple[tuple[str, int, bool], ...] = CONFIGS,
    with_quix: bool = True,
    idle_exit: float = 2.0,
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], **{c[0]: [] for c in configs}}
    started = time.perf_counter()
    with tansu() as (broker, _pid):
        messages, produce_s = produce(broker, workload)
        for i in range(repeats):
            b = bare(broker, f"bench-bare-{i}")
            if b["messages"] != messages:
                raise SystemExit(f"bench: bare loop read {b['messages']} of {messages}")
            runs["bare"].append(b)
            for name, processes, detectors in configs:
                runs[name].append(
                    run_koxpulse_kafka(
                        broker,
                        f"bench-{name}-{i}",
                        messages,
                        workdir,
                        processes=processes,
                        detectors=detectors,
                        idle_exit=idle_exit,
                    )
                )
        q = quix(broker, "bench-quix", messages, workdir) if with_quix else {"status": "skipped"}
    ceiling = med(runs["bare"])
    out: dict[str, Any] = {
        "messages": messages,
        "topics": "kox.scans, kox.redemptions, kox.orders, kox.shipments (3 partitions each)",
        "produce_events_per_s": round(messages / produce_s),
        "repeats": repeats,
        "bare_events_per_s": round(ceiling),
        "bare_events_per_s_all": [round(r["events_per_s"]) for r in runs["bare"]],
        "quix": q,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, _p, _d in configs:
        rs = runs[name]
        rate = med(rs)
        out[name] = {
            "events_per_s": round(rate),
            "events_per_s_all": [round(r["events_per_s"]) for r in rs],
            "ratio_vs_bare": round(rate / ceiling, 3),
            "events_per_s_incl_start_and_flush": round(
                med(rs, "events_per_s_incl_start_and_flush")
            ),
            "first_message_after_s": round(med(rs, "first_message_after_s"), 2),
            "alerts": rs[0]["alerts"],
        }
    for det in ("off", "on"):
        one, two = out.get(f"koxpulse_1p_detectors_{det}"), out.get(f"koxpulse_2p_detectors_{det}")
        if one and two:
            out[f"two_vs_one_process_detectors_{det}"] = round(
                two["events_per_s"] / one["events_per_s"], 3
            )
        if one and q.get("status") == "ok":
            out[f"koxpulse_vs_quix_detectors_{det}"] = round(
                one["events_per_s"] / q["events_per_s"], 2
            )
    return out

"""``make bench``: seeded workloads, side-by-side measurements, JSON and Markdown results.

Each comparison runs both sides in the same invocation, alternating, several
times, and reports the median; the headline is the ratio, not absolute speed,
because this machine's speed varies with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _run_json(args: list[str]) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args[:3])} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def machine() -> dict[str, object]:
    libs: dict[str, str | None] = {}
    for name in ("bytewax", "msgspec", "orjson", "chdb", "clickhouse-connect", "river"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": libs,
    }


def make_workload(workdir: Path, hours: float, scale: float, seed: int) -> Path:
    from koxpulse.simulator import simulate

    path = workdir / f"bench-{hours:g}h-x{scale:g}-s{seed}.jsonl"
    simulate(path, hours=hours, seed=seed, scale=scale, incidents=True)
    return path


def bench_replay(path: Path, repeats: int, workdir: Path) -> dict[str, object]:
    bare, ours, bare_wall, ours_wall = [], [], [], []
    messages = 0
    for i in range(repeats):
        b, bw = _run_json([sys.executable, "-m", "bench.bare_loop", str(path)])
        dsn = f"chdb://{workdir / f'chdb-{i}'}"
        k, kw = _run_json([sys.executable, "-m", "bench.koxpulse_replay", str(path), dsn])
        shutil.rmtree(workdir / f"chdb-{i}", ignore_errors=True)
        messages = int(b["messages"])
        if int(k["messages"]) != messages:
            raise SystemExit(f"bench: koxpulse read {k['messages']} messages, bare loop {messages}")
        bare.append(messages / b["seconds"])
        ours.append(messages / k["seconds"])
        bare_wall.append(messages / bw)
        ours_wall.append(messages / kw)
    b_med, k_med = statistics.median(bare), statistics.median(ours)
    return {
        "name": "file replay",
        "messages": messages,
        "repeats": repeats,
        "bare_events_per_s": round(b_med),
        "koxpulse_events_per_s": round(k_med),
        "ratio": round(k_med / b_med, 3),
        "target_ratio": 0.5,
        "wall_incl_startup": {
            "bare_events_per_s": round(statistics.median(bare_wall)),
            "koxpulse_events_per_s": round(statistics.median(ours_wall)),
            "ratio": round(statistics.median(ours_wall) / statistics.median(bare_wall), 3),
        },
    }


def write_results(results: list[dict[str, object]], info: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": info,
        "results": results,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Benchmark results",
        "",
        f"Measured {doc['when']} on {info['cores']} cores, Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in dict(info["libraries"]).items() if v),  # type: ignore[call-overload]
        "",
        "| benchmark | events | bare loop (events/s) | koxpulse (events/s) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['messages']:,} | {r['bare_events_per_s']:,} | "
            f"{r['koxpulse_events_per_s']:,} | **{r['ratio']}×** | ≥ {r['target_ratio']}× |"
        )
        wall = r.get("wall_incl_startup")
        if isinstance(wall, dict):
            lines.append(
                f"| {r['name']}, wall clock incl. process start | {r['messages']:,} | "
                f"{wall['bare_events_per_s']:,} | {wall['koxpulse_events_per_s']:,} | "
                f"{wall['ratio']}× | |"
            )
    lines += [
        "",
        "Throughput is timed inside each process around the work (imports excluded) and is the "
        "median of the repeats; the bare loop parses each line with orjson and counts by type, "
        "koxpulse decodes, validates, de-duplicates, windows and writes to embedded ClickHouse.",
    ]
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="koxpulse-bench-") as tmp:
        work = Path(tmp)
        path = make_workload(work, args.hours, args.scale, args.seed)
        results = [bench_replay(path, args.repeats, work)]
    write_results(results, info)
    for r in results:
        print(
            f"{r['name']}: {r['messages']:,} events; bare loop {r['bare_events_per_s']:,}/s, "
            f"koxpulse {r['koxpulse_events_per_s']:,}/s -> {r['ratio']}x "
            f"(target >= {r['target_ratio']}x)"
        )
    print(f"results: {RESULTS / 'README.md'}")


if __name__ == "__main__":
    main()

"""Where the time goes in ``koxpulse run --input``: a py-spy profile, summarised.

``py-spy record`` samples the real command (detectors on, events stored, embedded
ClickHouse) and writes a speedscope file (open it at speedscope.app or with
``speedscope FILE``). The summary attributes each sample of the dataflow thread to
the innermost koxpulse frame's area (decode, lateness, KPI windows, detectors, rows
for ClickHouse, ...); time spent in C code called from a Python frame counts for
that frame (py-spy sees Python frames only). Samples whose innermost Python frame is
``runner.replay`` are inside Bytewax's Rust engine (``run_main``), between steps;
the dataflow thread's samples outside ``runner.replay`` (imports, settings, the schema)
are start-up, counted apart. Without py-spy (the ``bench`` extra), cProfile runs instead.
"""

from __future__ import annotations

import json
import pstats
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

AREAS = (
    ("koxpulse/decode.py", "decode and validate (msgspec, timestamps)"),
    ("koxpulse/tsparse.py", "decode and validate (msgspec, timestamps)"),
    ("koxpulse/events.py", "decode and validate (msgspec, timestamps)"),
    ("koxpulse/lateness.py", "lateness per partition"),
    ("koxpulse/kpi.py", "dedup and minute windows (KPI aggregation)"),
    ("koxpulse/detection.py", "detectors (fraud and KPI)"),
    ("detectors/", "detectors (fraud and KPI)"),
    ("koxpulse/alerts.py", "detectors (fraud and KPI)"),
    ("sinks/event_columns.py", "rows for ClickHouse (events table columns)"),
    ("sinks/", "ClickHouse sink hand-over"),
    ("koxpulse/sources/", "reading the file"),
    ("koxpulse/metrics.py", "metrics"),
    ("koxpulse/kpi_metrics.py", "metrics"),
    ("prometheus_client/", "metrics"),
)


def _area(file: str, name: str) -> str | None:
    if file.endswith("koxpulse/stages.py"):  # the step functions: only the row builders
        return "rows for ClickHouse (events table columns)" if "rows" in name else None
    for prefix, area in AREAS:
        if prefix in file:
            return area
    if file.endswith("koxpulse/runner.py") and name == "replay":
        return "Bytewax engine (Rust, between steps)"
    return None


def _in_replay(file: str, name: str) -> bool:
    return file.endswith("koxpulse/runner.py") and name == "replay"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/wt-bench/", "/koxpulse/../"):
        if marker in file:
            return file.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return file.replace(root, "")


def summarise_speedscope(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    threads = []
    main: dict[str, Any] | None = None
    for prof in doc["profiles"]:
        areas: Counter[str] = Counter()
        selfs: Counter[str] = Counter()
        startup = 0.0
        stacks = [
            ([(frames[i].get("file", ""), frames[i]["name"]) for i in stack], stack, w)
            for stack, w in zip(prof["samples"], prof["weights"], strict=True)
            if stack
        ]
        flow = [any(_in_replay(f, n) for f, n in names) for names, _, _ in stacks]
        dataflow_thread = any(flow)
        for (names, stack, w), in_flow in zip(stacks, flow, strict=True):
            if dataflow_thread and not in_flow:
                startup += w  # imports, settings, schema: before the dataflow runs
                continue
            top = frames[stack[-1]]
            selfs[f"{top['name']} ({_short(top.get('file', ''))})"] += w
            area = None
            for f, n in reversed(names):
                area = _area(f, n)
                if area is not None:
                    break
            areas[area or "other"] += w
        total = float(sum(areas.values())) or 1.0
        t = {
            "thread": prof["name"],
            "seconds": round(total, 2),
            "startup_seconds": round(startup, 2),
            "areas": {k: round(v / total, 3) for k, v in areas.most_common()},
            "top_self": [
                {"function": k, "share": round(v / total, 3)} for k, v in selfs.most_common(15)
            ],
        }
        threads.append(t)
        if main is None or total > main["seconds"]:
            main = t
    return {"tool": "py-spy", "threads": threads, "main": main}


def summarise_cprofile(path: Path) -> dict[str, Any]:
    st = pstats.Stats(str(path))
    entries = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1.0
    areas: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    for (file, _line, name), v in entries.items():
        areas[_area(file, name) or "other (start-up included)"] += v[2]
        selfs[f"{name} ({_short(file)})"] += v[2]
    main = {
        "thread": "main (cProfile: all threads' Python time)",
        "seconds": round(total, 2),
        "areas": {k: round(v / total, 3) for k, v in areas.most_common()},
        "top_self": [
            {"function": k, "share": round(v / total, 3)} for k, v in selfs.most_common(15)
        ],
    }
    return {"tool": "cProfile", "threads": [main], "main": main}


def profile_replay(workload: Path, workdir: Path, results: Path) -> dict[str, Any]:
    chdb = workdir / "chdb-profile"
    run = [
        "-m",
        "koxpulse.cli",
        "run",
        "--input",
        str(workload),
        "--clickhouse",
        f"chdb://{chdb}",
        "--detectors",
        "on",
        "--progress",
        "off",
    ]
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out: dict[str, Any]
    if Path(pyspy).exists():
        target = results / "profile-replay.speedscope.json"
        proc = subprocess.run(
            [
                *(pyspy, "record", "--rate", "100", "--format", "speedscope"),
                *("-o", str(target), "--", sys.executable, *run),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and target.exists():
            out = summarise_speedscope(target)
            out["file"] = target.name
            shutil.rmtree(chdb, ignore_errors=True)
            return out
        why = proc.stderr.strip()[-300:]
    else:
        why = "py-spy not installed (pip install -e '.[bench]')"
    target = workdir / "profile-replay.prof"
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(target), *run],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(chdb, ignore_errors=True)
    if proc.returncode != 0:
        return {"tool": "none", "why": f"{why}; cProfile failed: {proc.stderr.strip()[-300:]}"}
    out = summarise_cprofile(target)
    out["why_not_py_spy"] = why
    return out

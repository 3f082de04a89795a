"""Stream every NAB series through a detector and write NAB's results layout.

Each file gets a fresh detector built by the same factory (one parameter set for
the whole corpus), sees its values strictly one at a time (``score_one`` before
``learn_one``, so a score never depends on the value it scores or on anything
later), and the scores are written to
``out_dir/<detector>/<category>/<detector>_<name>.csv`` as
``timestamp,value,anomaly_score``.

Files are independent, so they are processed in parallel worker processes; each
output depends only on its input file, which keeps the run deterministic.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Protocol

from detectors.seasonal_robust import SeasonalRobustDetector
from koxpulse.nab.corpus import data_files


class StreamingDetector(Protocol):
    """The river-style interface the runner drives."""

    def learn_one(self, x: float, t: datetime | None = None) -> None: ...

    def score_one(self, x: float, t: datetime | None = None) -> float: ...


class NullDetector:
    """Never fires: NAB's baseline (normalised score 0 by construction)."""

    def learn_one(self, x: float, t: datetime | None = None) -> None:
        return None

    def score_one(self, x: float, t: datetime | None = None) -> float:
        return 0.0


DetectorFactory = Callable[[], StreamingDetector]

#: Detectors selectable by name (``--detector NAME``); each call builds a fresh instance.
DETECTORS: dict[str, DetectorFactory] = {
    "koxpulse": SeasonalRobustDetector,
    "null": NullDetector,
}


@dataclass(frozen=True)
class RunSummary:
    """What a corpus run did."""

    detector: str
    files: int
    rows: int
    seconds: float
    out_dir: Path


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def run_file(detector: str, src: Path, dst: Path) -> int:
    """Score one ``timestamp,value`` CSV into ``dst``; returns the number of rows."""
    det = DETECTORS[detector]()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    rows = 0
    with src.open(newline="") as fin, tmp.open("w", newline="") as fout:
        reader = csv.reader(fin)
        header = next(reader)
        ti, vi = header.index("timestamp"), header.index("value")
        writer = csv.writer(fout, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in reader:
            if not row:
                continue
            ts, raw = row[ti], row[vi]
            t = _parse_time(ts)
            x = float(raw)
            score = float(det.score_one(x, t))
            det.learn_one(x, t)
            if not math.isfinite(score):
                score = 0.0
            writer.writerow([ts, raw, repr(min(1.0, max(0.0, score)))])
            rows += 1
    tmp.replace(dst)
    return rows


def _work(args: tuple[str, str, str]) -> int:
    detector, src, dst = args
    return run_file(detector, Path(src), Path(dst))


def run_nab(
    data_dir: Path,
    out_dir: Path,
    detector: str = "koxpulse",
    *,
    processes: int | None = None,
) -> RunSummary:
    """Run ``detector`` over ``data_dir/<category>/<name>.csv`` into NAB's results layout."""
    if detector not in DETECTORS:
        raise KeyError(f"unknown detector {detector!r}; known: {sorted(DETECTORS)}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    rels = data_files(data_dir)
    if not rels:
        raise FileNotFoundError(f"no <category>/<name>.csv files under {data_dir}")
    # Largest files first so the pool stays busy until the end.
    rels.sort(key=lambda r: -(data_dir / r).stat().st_size)
    jobs = []
    for rel in rels:
        category, name = rel.split("/", 1)
        dst = out_dir / detector / category / f"{detector}_{name}"
        jobs.append((detector, str(data_dir / rel), str(dst)))
    start = time.perf_counter()
    n_proc = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    if n_proc == 1:
        counts = [_work(j) for j in jobs]
    else:
        method = "fork" if "fork" in get_all_start_methods() else None
        with get_context(method).Pool(n_proc) as pool:
            counts = pool.map(_work, jobs, chunksize=1)
    return RunSummary(
        detector=detector,
        files=len(jobs),
        rows=sum(counts),
        seconds=time.perf_counter() - start,
        out_dir=out_dir / detector,
    )

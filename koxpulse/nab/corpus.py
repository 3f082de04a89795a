"""Reading the NAB corpus layout: data files, label windows, results files.

Kept apart from the scorer so the runner and the scorer agree on paths and on how
timestamps are parsed (windows are matched to rows by exact timestamp equality,
as NAB does, so both sides must parse timestamps the same way).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

WINDOWS_FILE = Path("labels") / "combined_windows.json"
PROFILES_FILE = Path("config") / "profiles.json"


def data_files(data_dir: Path) -> list[str]:
    """Relative paths ``<category>/<name>.csv`` of every data file, sorted."""
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))


def parse_timestamps(values: pd.Series | list[str]) -> np.ndarray:
    """Timestamps as int64 nanoseconds (exact-equality friendly)."""
    return pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def load_windows(nab_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """Label windows per relative data path, as (start_ns, end_ns) pairs in file order."""
    raw = json.loads((nab_dir / WINDOWS_FILE).read_text())
    out: dict[str, list[tuple[int, int]]] = {}
    for rel, windows in raw.items():
        flat = [t for w in windows for t in w]
        ns = parse_timestamps(flat).tolist() if flat else []
        out[rel] = [(ns[2 * k], ns[2 * k + 1]) for k in range(len(windows))]
    return out


def load_profiles(nab_dir: Path) -> dict[str, dict[str, float]]:
    """Cost matrices by profile name, from ``config/profiles.json``."""
    raw = json.loads((nab_dir / PROFILES_FILE).read_text())
    return {name: dict(p["CostMatrix"]) for name, p in raw.items()}


def read_data_timestamps(nab_dir: Path, rel: str) -> np.ndarray:
    """Timestamps of one data file (NAB scores against the data file's rows)."""
    return parse_timestamps(pd.read_csv(nab_dir / "data" / rel, usecols=["timestamp"])["timestamp"])


def result_file(detector_dir: Path, detector: str, rel: str) -> Path | None:
    """Path of a detector's results for data file ``rel`` (``.csv`` or ``.csv.gz``)."""
    category, name = rel.split("/", 1)
    base = detector_dir / category / f"{detector}_{name}"
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def result_rel_paths(detector_dir: Path, detector: str) -> list[str]:
    """Data paths for which ``detector_dir`` holds results, sorted."""
    prefix = f"{detector}_"
    rels = set()
    for p in detector_dir.glob("*/*"):
        name = p.name
        if not name.startswith(prefix):
            continue
        if name.endswith(".csv.gz"):
            name = name[:-3]
        if not name.endswith(".csv") or name.endswith("_scores.csv"):
            continue
        rels.add(f"{p.parent.name}/{name[len(prefix) :]}")
    return sorted(rels)


def read_anomaly_scores(path: Path) -> np.ndarray:
    """The ``anomaly_score`` column of a results file (other columns are ignored)."""
    return pd.read_csv(path, usecols=["anomaly_score"])["anomaly_score"].to_numpy(np.float64)

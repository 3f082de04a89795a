"""NAB v1.1 scorer: reproduces the published reference figures; sweep equals NAB's loop.

Also covers the corpus runner (layout, determinism) on a tiny synthetic corpus.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koxpulse.nab import scoring
from koxpulse.nab.runner import DETECTORS, run_nab

NAB_DIR = Path(
    os.environ.get("KOXPULSE_NAB_DIR", Path(__file__).resolve().parents[3] / "shared" / "nab")
)
REFERENCE = NAB_DIR / "reference_results"
needs_nab = pytest.mark.skipif(not REFERENCE.is_dir(), reason="NAB corpus not available")

# NAB's committed config/thresholds.json, used for its published leaderboard.
NAB_PUBLISHED_THRESHOLDS = {
    "numenta": {
        "standard": 0.5421876907348634,
        "reward_low_FP_rate": 0.5751955032348636,
        "reward_low_FN_rate": 0.5421876907348634,
    },
    "windowedGaussian": {p: 1.0 for p in scoring.PROFILE_NAMES},
}
PUBLISHED = {
    "numenta": (70.10, 63.12, 74.32),
    "windowedGaussian": (39.65, 20.87, 47.41),
}


def _figures(result: dict[str, scoring.ProfileScore]) -> tuple[float, ...]:
    return tuple(round(result[p].normalized, 2) for p in scoring.PROFILE_NAMES)


@needs_nab
@pytest.mark.parametrize("detector", sorted(PUBLISHED))
def test_reference_detectors_match_published_figures(detector: str) -> None:
    swept = scoring.score_results(REFERENCE, NAB_DIR, detector)
    for got, want in zip(_figures(swept), PUBLISHED[detector], strict=True):
        assert abs(got - want) <= 0.1
    # With NAB's committed thresholds the figures are exact to two decimals.
    fixed = scoring.score_results(
        REFERENCE, NAB_DIR, detector, thresholds=NAB_PUBLISHED_THRESHOLDS[detector]
    )
    assert _figures(fixed) == PUBLISHED[detector]


@needs_nab
def test_sweep_optimum_and_null_baseline() -> None:
    res = scoring.score_results(REFERENCE, NAB_DIR, "numenta")
    std = res["standard"]
    assert std.threshold == pytest.approx(0.543099145074)
    assert std.null == -116.0 and std.perfect == 116.0
    assert res["reward_low_FN_rate"].null == -232.0
    assert sum(std.file_scores.values()) == pytest.approx(std.raw)
    # The sweep optimum is at least as good as NAB's hill-climbed threshold.
    assert res["reward_low_FP_rate"].normalized == pytest.approx(63.21, abs=0.01)


def test_scaled_sigmoid_and_probation() -> None:
    assert scoring.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scoring.scaled_sigmoid(0.0) == 0.0
    assert scoring.scaled_sigmoid(3.5) == -1.0
    assert scoring.probationary_length(1000) == 150
    assert scoring.probationary_length(22695) == 750


def _naive_sweep(
    scores: list[np.ndarray], rows: list[scoring.FileRows], cost: dict[str, float]
) -> dict[float, float]:
    """NAB's calcScoreByThreshold, transcribed as a plain loop (the oracle)."""
    max_tp = scoring.scaled_sigmoid(-1.0)
    points: list[tuple[float, float, tuple[int, int] | None]] = []
    for k, (sc, r) in enumerate(zip(scores, rows, strict=True)):
        cut = r.n_rows - len(r.weight)
        for s, wgt, win in zip(sc[cut:], r.weight, r.window, strict=True):
            if win >= 0:
                points.append((float(s), wgt * cost["tpWeight"] / max_tp, (k, int(win))))
            else:
                points.append((float(s), wgt * cost["fpWeight"], None))
    parts: dict[object, float] = {"fp": 0.0}
    for _, _, name in points:
        if name is not None:
            parts[name] = -cost["fnWeight"]
    points.sort(key=lambda p: p[0], reverse=True)
    out: dict[float, float] = {}
    cur = 1.1
    for s, v, name in points:
        if s != cur:
            out[cur] = sum(parts.values())
            cur = s
        if name is None:
            parts["fp"] += v
        else:
            parts[name] = max(parts[name], v)
    out[cur] = sum(parts.values())
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=20, max_value=120),
    seed=st.integers(min_value=0, max_value=10**6),
    n_files=st.integers(min_value=1, max_value=3),
    levels=st.integers(min_value=2, max_value=12),
)
def test_vectorised_sweep_equals_nab_loop(n: int, seed: int, n_files: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = datetime(2020, 1, 1)
    ts = [t0 + timedelta(minutes=5 * i) for i in range(n)]
    ns = scoring.corpus.parse_timestamps([t.isoformat(sep=" ") for t in ts])
    rows, scores = [], []
    for f in range(n_files):
        windows: list[tuple[int, int]] = []
        start = int(rng.integers(int(0.15 * n), n - 5))
        while start < n - 3 and len(windows) < 3:
            end = min(n - 1, start + int(rng.integers(1, 8)))
            windows.append((int(ns[start]), int(ns[end])))
            start = end + int(rng.integers(2, 20))
        rows.append(scoring.file_rows(f"c/f{f}.csv", ns, windows))
        scores.append(rng.integers(0, levels, n) / levels)  # ties on purpose
    cost = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}
    thresholds, totals = scoring.sweep(scores, rows, cost)
    oracle = _naive_sweep(scores, rows, cost)
    assert sorted(oracle) == sorted(thresholds.tolist())
    for th, tot in zip(thresholds, totals, strict=True):
        assert tot == pytest.approx(oracle[float(th)], abs=1e-9)
    # Scoring one file at a threshold agrees with the sweep's total for one file.
    th1, tot1 = scoring.sweep(scores[:1], rows[:1], cost)
    for th, tot in zip(th1, tot1, strict=True):
        assert scoring.score_at(scores[0], rows[0], cost, float(th))[0] == pytest.approx(tot)


def _tiny_corpus(root: Path) -> Path:
    """Two 400-row files and labels/profiles in NAB's layout."""
    (root / "data" / "synthetic").mkdir(parents=True)
    t0 = datetime(2021, 3, 1)
    rng = np.random.default_rng(7)
    windows = {}
    for name, jump_at in (("a.csv", 340), ("b.csv", 360)):  # after the 1-day warm-up
        with (root / "data" / "synthetic" / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value"])
            for i in range(400):
                x = 10 + rng.normal() + (40.0 if i == jump_at else 0.0)
                w.writerow([(t0 + timedelta(minutes=5 * i)).isoformat(sep=" "), f"{x:.4f}"])
        lo, hi = (
            t0 + timedelta(minutes=5 * (jump_at - 10)),
            t0 + timedelta(minutes=5 * (jump_at + 10)),
        )
        windows[f"synthetic/{name}"] = [
            [lo.isoformat(sep=" ") + ".000000", hi.isoformat(sep=" ") + ".000000"]
        ]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    profiles = {
        p: {"CostMatrix": {"tpWeight": 1.0, "fnWeight": fn, "fpWeight": fp, "tnWeight": 1.0}}
        for p, fn, fp in (
            ("standard", 1.0, 0.11),
            ("reward_low_FP_rate", 1.0, 0.22),
            ("reward_low_FN_rate", 2.0, 0.11),
        )
    }
    (root / "config" / "profiles.json").write_text(json.dumps(profiles))
    return root


def test_runner_layout_determinism_and_scoring(tmp_path: Path) -> None:
    nab = _tiny_corpus(tmp_path / "nab")
    one = run_nab(nab / "data", tmp_path / "out1", processes=1)
    two = run_nab(nab / "data", tmp_path / "out2", processes=2)
    assert (one.files, one.rows) == (2, 800) == (two.files, two.rows)
    for name in ("a.csv", "b.csv"):
        p1 = tmp_path / "out1" / "koxpulse" / "synthetic" / f"koxpulse_{name}"
        p2 = tmp_path / "out2" / "koxpulse" / "synthetic" / f"koxpulse_{name}"
        assert p1.read_bytes() == p2.read_bytes()
        with p1.open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    res = scoring.score_results(tmp_path / "out1", nab)  # the only detector dir
    assert res["standard"].normalized == pytest.approx(100 * (0.86 + 0.86 + 2) / 4, abs=5)
    assert set(DETECTORS) >= {"koxpulse", "null"}


def test_results_without_value_column_and_gzipped(tmp_path: Path) -> None:
    nab = _tiny_corpus(tmp_path / "nab")
    run_nab(nab / "data", tmp_path / "out", detector="null", processes=1)
    src = tmp_path / "out" / "null" / "synthetic"
    for p in sorted(src.glob("*.csv")):
        with p.open() as f:
            rows = list(csv.DictReader(f))
        with gzip.open(p.with_name(p.name + ".gz"), "wt", newline="") as g:
            g.write("timestamp,anomaly_score\n")
            g.writelines(f"{r['timestamp']},{r['anomaly_score']}\n" for r in rows)
        p.unlink()
    res = scoring.score_results(tmp_path / "out", nab, "null")
    assert all(math.isclose(r.normalized, 0.0, abs_tol=1e-12) for r in res.values())
    with pytest.raises(FileNotFoundError):
        scoring.score_corpus({}, nab)


@needs_nab
@pytest.mark.slow
def test_koxpulse_detector_on_full_corpus(tmp_path: Path) -> None:
    summary = run_nab(NAB_DIR / "data", tmp_path)
    assert summary.files == 58 and summary.rows == 365_558
    res = scoring.score_results(tmp_path, NAB_DIR, "koxpulse")
    assert res["standard"].normalized >= 65.0
    assert res["reward_low_FP_rate"].normalized >= 55.0
    assert res["reward_low_FN_rate"].normalized >= 68.0

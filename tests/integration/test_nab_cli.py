"""``koxpulse nab run`` then ``koxpulse nab score`` on the full corpus, as a user runs them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT, run_cli

NAB = ROOT.parent / "shared" / "nab"


def test_nab_run_and_score_the_whole_corpus(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_cli("nab", "run", "--data", str(NAB / "data"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "58 files" in proc.stdout
    files = list((out / "koxpulse").rglob("koxpulse_*.csv"))
    assert len(files) == 58
    header = files[0].read_text().splitlines()[0]
    assert header == "timestamp,value,anomaly_score"
    proc = run_cli("nab", "score", "--results", str(out), "--nab", str(NAB))
    assert proc.returncode == 0, proc.stderr
    scores = dict(
        re.findall(
            r"^(standard|reward_low_FP_rate|reward_low_FN_rate)\s+([\d.]+)", proc.stdout, re.M
        )
    )
    assert set(scores) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    # above Skyline (58.2) and KNN CAD (58.0) on the standard profile
    assert float(scores["standard"]) >= 60.0


def test_nab_misuse_is_a_one_line_usage_error(tmp_path: Path) -> None:
    proc = run_cli("nab", "score", "--results", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("nab", "run", "--detector", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "known detectors" in proc.stderr

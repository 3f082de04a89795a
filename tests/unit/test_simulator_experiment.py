"""simulate --experiment: chosen effects per campaign and region, default bytes untouched."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

from koxpulse.simulator import companion_paths, simulate
from koxpulse.simulator.experiment import parse_spec
from koxpulse.simulator.world import CAMPAIGNS

RUN = {"hours": 3, "seed": 9, "scale": 0.05}


def test_specs_equal_to_the_built_in_effects_change_no_event(tmp_path: Path) -> None:
    """The experiment hook only swaps the uplift: with the built-in values the stream,
    truth and labels are the same bytes, and the expectations only gain the effects."""
    plain = tmp_path / "plain.jsonl.gz"
    same = tmp_path / "same.jsonl.gz"
    simulate(plain, **RUN)
    specs = [parse_spec(f"{c.campaign_id}:redemption_rate:{c.treatment_delta}") for c in CAMPAIGNS]
    simulate(same, **RUN, experiments=specs)
    assert plain.read_bytes() == same.read_bytes()
    a, b = companion_paths(plain), companion_paths(same)
    assert a.truth.read_bytes() == b.truth.read_bytes()
    assert a.labels.read_bytes() == b.labels.read_bytes()
    ea, eb = json.loads(a.expected.read_text()), json.loads(b.expected.read_text())
    assert "effects" not in ea["experiment"]
    added = {k: v for k, v in eb["experiment"].items() if k not in ea["experiment"]}
    assert set(added) == {"specs", "effects", "effects_note"}
    assert {k: v for k, v in eb["experiment"].items() if k not in added} == ea["experiment"]
    assert {k: v for k, v in eb.items() if k != "experiment"} == {
        k: v for k, v in ea.items() if k != "experiment"
    }


def test_effects_are_written_and_realised(tmp_path: Path) -> None:
    out = tmp_path / "exp.jsonl.gz"
    simulate(
        out,
        hours=12,
        seed=4,
        scale=0.1,
        experiments=[
            parse_spec("CMP-2611-REDPACK:redemption_rate:0"),
            parse_spec("CMP-2611-REDPACK:redemption_rate:0.3:CN-SD"),
        ],
    )
    expected = json.loads(companion_paths(out).expected.read_text())
    exp = expected["experiment"]
    invalid = {r["line"] for r in expected["invalid"]}
    red = next(e for e in exp["effects"] if e["campaign_id"] == "CMP-2611-REDPACK")
    by_region = {r["region"]: r for r in red["regions"]}
    assert by_region["CN-SD"]["design_effect"] == 0.3
    # below the design: redemptions due after the run's end are never written, and this
    # 12-hour run ends at the noon peak with many e-commerce redemptions (median 2 h) due
    assert 0.18 < by_region["CN-SD"]["sample_effect"] < 0.3
    for region, r in by_region.items():
        if region != "CN-SD":
            assert r["design_effect"] == 0.0 and r["marginal_redemptions"] == 0
    # the scans behind each realised effect are the campaign's scans in the file
    seen: set[str] = set()
    scans: Counter[tuple[str, str]] = Counter()
    with gzip.open(out, "rb") as f:  # (the stream has invalid lines, some not UTF-8)
        for no, line in enumerate(f, start=1):
            if no in invalid:
                continue
            e = json.loads(line)
            if e["event_id"] in seen:
                continue
            seen.add(e["event_id"])
            if e["type"] == "scan":
                scans[(e.get("campaign_id"), e["region"])] += 1
    assert {r: by_region[r]["scans"] for r in by_region} == {
        r: scans[("CMP-2611-REDPACK", r)] for r in by_region
    }
    assert red["scans"] == sum(scans[k] for k in scans if k[0] == "CMP-2611-REDPACK")

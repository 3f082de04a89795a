"""End to end: simulate an experiment with known effects → ``koxpulse run`` → chDB →
``koxpulse ab report --format json`` reads the effects back within their intervals.

The true effect to cover is the simulator's realised one (it knows both potential
outcomes of every scan): what the difference in redemption rates estimates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from koxpulse.simulator import companion_paths, simulate
from koxpulse.simulator.experiment import parse_spec
from koxpulse.simulator.world import REGIONS
from tests.conftest import run_cli
from tests.integration.test_replay_exact import query, replay

REDPACK, LUCKY = "CMP-2611-REDPACK", "CMP-2611-LUCKYDRAW"
SPECS = (f"{REDPACK}:redemption_rate:0", f"{REDPACK}:redemption_rate:0.1:CN-SD")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("ab")
    stream = d / "exp.jsonl.gz"
    simulate(stream, hours=48, seed=11, scale=0.3, experiments=[parse_spec(s) for s in SPECS])
    dsn = f"chdb://{d / 'chdb'}"
    replay([stream], dsn, "--detectors", "off")
    expected = json.loads(companion_paths(stream).expected.read_text())
    return dsn, expected, stream


def report(dsn: str, campaign: str, *extra: str) -> dict[str, Any]:
    proc = run_cli(
        "ab", "report", "--campaign", campaign, "--clickhouse", dsn, "--format", "json", *extra
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def effects(expected: dict[str, Any], campaign: str) -> dict[str, Any]:
    return next(e for e in expected["experiment"]["effects"] if e["campaign_id"] == campaign)


USERS_SQL = (
    "SELECT campaign_id, count() AS users, sum(scans) AS scans, sum(redemptions) AS red, "
    "sum(orders) AS orders, round(sum(revenue), 2) AS revenue, sum(multi_variant) AS multi "
    "FROM koxpulse.ab_users GROUP BY campaign_id ORDER BY campaign_id"
)
DAILY_SQL = (
    "SELECT campaign_id, sum(new_users) AS users, sum(scans) AS scans, "
    "sum(redemptions) AS red FROM koxpulse.ab_daily GROUP BY campaign_id ORDER BY campaign_id"
)
EVENTS_SQL = (
    "SELECT campaign_id, uniqExact(user_id) AS users, count() AS scans "
    "FROM koxpulse.events FINAL WHERE type = 'scan' AND campaign_id IS NOT NULL "
    "GROUP BY campaign_id ORDER BY campaign_id"
)


def test_views_agree_with_events_and_stay_exact_under_replay(experiment) -> None:
    dsn, expected, stream = experiment
    users = query(dsn, USERS_SQL)
    daily = {r["campaign_id"]: r for r in query(dsn, DAILY_SQL)}
    events = {r["campaign_id"]: r for r in query(dsn, EVENTS_SQL)}
    assert [r["campaign_id"] for r in users] == sorted([REDPACK, LUCKY])
    late = expected["late_events"]
    for r in users:
        c = r["campaign_id"]
        assert r["multi"] == 0  # assignment is by user: nobody sees two variants
        assert r["users"] == daily[c]["users"] == events[c]["users"]
        # every scan of a campaign is at or after its user's first scan; so is every
        # redemption, except those whose scan arrived late (not counted: never exposed)
        assert r["scans"] == daily[c]["scans"] == events[c]["scans"]
        assert 0 <= daily[c]["red"] - r["red"] <= late
        # the simulator's own count of the campaign's scans, less the few late events
        assert 0 <= effects(expected, c)["scans"] - r["scans"] <= late
    # a second replay writes every row again: views over FINAL must not double count
    replay([stream], dsn, "--detectors", "off")
    assert query(dsn, USERS_SQL) == users
    assert {r["campaign_id"]: r for r in query(dsn, DAILY_SQL)} == daily


def _covers(comp: dict[str, Any], truth: float) -> bool:
    a = comp[comp["headline"]]["absolute"]
    return bool(a["low"] <= truth <= a["high"])


def test_report_reads_back_the_effects_within_their_intervals(experiment) -> None:
    dsn, expected, _ = experiment
    misses = []
    for campaign in (REDPACK, LUCKY):
        truth = effects(expected, campaign)
        overall = report(dsn, campaign, "--metric", "redemption_rate")
        (comp,) = overall["comparisons"]
        assert not overall["srm"]["flagged"]
        assert overall["multi_variant"] == {"control": 0, "treatment": 0}
        assert _covers(comp, truth["sample_effect"]), (campaign, comp, truth["sample_effect"])
        assert comp[comp["headline"]]["absolute"]["estimate"] > 0
        if campaign != REDPACK:
            continue
        for region in truth["regions"]:  # the designed per-region effects
            got = report(dsn, campaign, "--metric", "redemption_rate", "--region", region["region"])
            assert got["filters"] == {"region": region["region"]}
            (rc,) = got["comparisons"]
            if not _covers(rc, region["sample_effect"]):
                misses.append((campaign, region["region"]))
            if region["design_effect"] >= 0.1:  # the large effect: right sign, significant
                head = rc[rc["headline"]]
                assert _covers(rc, region["sample_effect"])
                assert head["absolute"]["low"] > 0.05 and head["p"] < 1e-6
                assert rc["final"] and "raises redemption rate" in rc["verdict"]
    print(f"regional intervals missing the realised effect: {misses}")
    # 8 regional 95 % intervals: 3 or more misses has probability < 1 %
    assert len(misses) <= 2, misses
    assert len(REGIONS) == 8


def test_report_formats_and_misuse(experiment, tmp_path: Path) -> None:
    dsn, _, _ = experiment
    page = tmp_path / "ab.html"
    proc = run_cli(
        "ab", "report", "--campaign", REDPACK, "--clickhouse", dsn, "--format", "html",
        "--out", str(page),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "http" not in text and "<script" not in text
    table = run_cli("ab", "report", "--campaign", REDPACK, "--clickhouse", dsn)
    assert table.returncode == 0 and "The split is healthy" in table.stdout
    for args, why in (
        (["--campaign", "CMP-NOPE"], "has no exposed users"),
        (["--campaign", REDPACK, "--metric", "nps"], "unknown metric nps"),
        (["--campaign", REDPACK, "--ab-control", "treatment2"], "no users in control variant"),
        (["--campaign", REDPACK, "--ab-split", "control=1"], "names no share for variant"),
        (["--campaign", REDPACK, "--ab-alpha", "2"], "between 0 and 0.5"),
    ):
        bad = run_cli("ab", "report", "--clickhouse", dsn, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert why in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_fraud_flagged_users_are_excluded_and_counted(tmp_path: Path) -> None:
    stream = tmp_path / "fraud.jsonl.gz"
    simulate(stream, hours=30, seed=5, scale=0.1, incidents=True)
    dsn = f"chdb://{tmp_path / 'chdb'}"
    replay([stream], dsn)
    # the same rule written out on the raw tables, not through the view
    sql = (
        "SELECT campaign_id, uniqExact(user_id) AS n FROM koxpulse.events FINAL "
        "WHERE type = 'scan' AND campaign_id IS NOT NULL AND ("
        " user_id IN (SELECT entity_id FROM koxpulse.alerts FINAL WHERE entity_type = 'user')"
        " OR user_id IN (SELECT user_id FROM koxpulse.events FINAL WHERE device_id IN"
        "  (SELECT entity_id FROM koxpulse.alerts FINAL WHERE entity_type = 'device')))"
        " GROUP BY campaign_id"
    )
    flagged = {r["campaign_id"]: r["n"] for r in query(dsn, sql)}
    assert sum(flagged.values()) > 0, "the incidents should raise user or device alerts"
    for campaign, n in flagged.items():
        kept = report(dsn, campaign, "--metric", "conversion")
        dropped = report(dsn, campaign, "--metric", "conversion", "--exclude-fraud")
        multi = sum(kept["multi_variant"].values())
        assert sum(kept["fraud_flagged"].values()) == dropped["fraud_excluded"]
        assert n - multi <= dropped["fraud_excluded"] <= n
        assert (
            sum(kept["users"].values()) - sum(dropped["users"].values())
            == (dropped["fraud_excluded"])
        )

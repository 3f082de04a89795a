"""The readout from per-user rows: exclusions, split check, verdicts and the three formats."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from koxpulse.errors import ConfigError
from koxpulse.experiments.render import to_html, to_json, to_table
from koxpulse.experiments.report import USER_COLUMNS, Design, build_report
from koxpulse.simulator.experiment import Effects, parse_spec
from koxpulse.simulator.world import CAMPAIGNS, REGIONS


def make_users(
    n_control: int, n_treatment: int, *, p_control: float, p_treatment: float, seed: int = 1
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_control + n_treatment
    variant = np.array(["control"] * n_control + ["treatment"] * n_treatment)
    p = np.where(variant == "treatment", p_treatment, p_control)
    scans = 1 + rng.poisson(1.0, n)
    users: dict[str, np.ndarray] = {
        "variant": variant,
        "multi_variant": np.zeros(n, dtype=bool),
        "fraud_user": np.zeros(n, dtype=bool),
        "fraud_device": np.zeros(n, dtype=bool),
        "scans": scans.astype(float),
        "redemptions": rng.binomial(scans, p).astype(float),
        "orders": rng.poisson(0.2, n).astype(float),
        "pre_scans": rng.poisson(0.5, n).astype(float),
        "pre_redemptions": np.zeros(n),
        "pre_orders": rng.poisson(0.2, n).astype(float),
        "first_exposure_ms": np.full(n, 1_795_000_000_000, dtype=np.int64),
    }
    users["revenue"] = users["orders"] * 20.0
    users["converted"] = (users["orders"] > 0).astype(float)
    users["pre_revenue"] = users["pre_orders"] * 20.0
    assert set(USER_COLUMNS) <= set(users)
    return users


def test_a_large_effect_is_final_with_the_exact_wording() -> None:
    users = make_users(20_000, 20_000, p_control=0.40, p_treatment=0.45)
    report = build_report("CMP", users, ["redemption_rate"], Design(planned_users=10_000))
    (c,) = report.comparisons
    assert c.significant and c.final
    a = c.headline.absolute
    assert a.low > 0.03 and a.high < 0.07
    assert c.verdict.startswith(
        f"variant treatment raises redemption rate by {100 * a.estimate:.1f} pts "
        f"[{100 * a.low:.1f}, {100 * a.high:.1f}]"
    )
    assert "the split is healthy; the result is final" in c.verdict
    assert not report.srm.flagged


def test_no_effect_says_keep_collecting() -> None:
    users = make_users(3_000, 3_000, p_control=0.40, p_treatment=0.40, seed=4)
    report = build_report("CMP", users, ["redemption_rate"], Design(planned_users=50_000))
    (c,) = report.comparisons
    assert not c.final
    assert "keep collecting" in c.verdict


def test_srm_fixture_breaks_the_verdict() -> None:
    users = make_users(48_000, 52_000, p_control=0.40, p_treatment=0.45)
    report = build_report("CMP", users, ["redemption_rate"], Design())
    assert report.srm.flagged and report.srm.chi2 == pytest.approx(160.0)
    assert report.srm_text.startswith("the split is broken")
    (c,) = report.comparisons
    assert not c.final
    assert "the split is broken" in c.verdict and "cannot be trusted" in c.verdict
    # the same counts are healthy when the design says 48/52
    ok = build_report(
        "CMP",
        users,
        ["redemption_rate"],
        Design(split=(("control", 0.48), ("treatment", 0.52))),
    )
    assert not ok.srm.flagged and ok.comparisons[0].final


def test_multi_variant_and_fraud_users_are_counted_and_left_out() -> None:
    users = make_users(1_000, 1_000, p_control=0.4, p_treatment=0.4)
    users["multi_variant"][:30] = True  # 30 control users
    users["fraud_user"][1_000:1_010] = True  # 10 treatment users
    users["fraud_device"][1_005:1_020] = True  # 5 more treatment users (10 overlap)
    users["fraud_device"][:5] = True  # multi-variant already: not counted twice
    kept = build_report("CMP", users, ["conversion"], Design())
    assert kept.multi_variant == {"control": 30, "treatment": 0}
    assert kept.fraud_flagged == {"control": 0, "treatment": 20}
    assert kept.users == {"control": 970, "treatment": 1_000} and kept.fraud_excluded == 0
    dropped = build_report("CMP", users, ["conversion"], Design(exclude_fraud=True))
    assert dropped.users == {"control": 970, "treatment": 980}
    assert dropped.fraud_excluded == 20
    assert "left out: 20" in to_table(dropped)


def test_misuse_is_a_config_error() -> None:
    users = make_users(100, 100, p_control=0.4, p_treatment=0.4)
    with pytest.raises(ConfigError, match="no users in control variant 'ctrl'"):
        build_report("CMP", users, ["conversion"], Design(control="ctrl"))
    with pytest.raises(ConfigError, match="names no share for variant treatment"):
        build_report("CMP", users, ["conversion"], Design(split=(("control", 1.0),)))


def test_formats() -> None:
    users = make_users(2_000, 2_000, p_control=0.40, p_treatment=0.46)
    report = build_report("CMP <x>", users, ["redemption_rate", "revenue_per_user"], Design())
    data = json.loads(to_json(report))
    assert data["campaign"] == "CMP <x>"
    assert [c["metric"] for c in data["comparisons"]] == ["redemption_rate", "revenue_per_user"]
    c = data["comparisons"][0]
    # no user redeemed before exposure: no covariate for the rate, CUPED for revenue
    assert c["headline"] == "plain" and c["cuped"] is None and c["variance_reduction"] is None
    assert data["comparisons"][1]["headline"] == "cuped"
    assert c["plain"]["absolute"]["low"] < c["plain"]["absolute"]["estimate"]
    assert data["srm"]["flagged"] is False and data["design"]["split"] == "equal"
    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>") and "CMP &lt;x&gt;" in page
    # self-contained: no scripts, no external resources
    assert not re.search(r"<script|<link|src=|https?://", page)
    text = to_table(report)
    assert "redemption rate (always valid)" in text and "CMP <x>" in text


def test_experiment_specs() -> None:
    spec = parse_spec("CMP-2611-REDPACK:redemption_rate:0.1:CN-SD")
    assert (spec.campaign_id, spec.metric, spec.effect, spec.region) == (
        "CMP-2611-REDPACK",
        "redemption_rate",
        0.1,
        "CN-SD",
    )
    for bad, why in (
        ("CMP-X:redemption_rate:0.1", "unknown campaign"),
        ("CMP-2611-REDPACK:orders:0.1", "unknown metric"),
        ("CMP-2611-REDPACK:redemption_rate:lots", "not a number"),
        ("CMP-2611-REDPACK:redemption_rate:0.9", "within"),
        ("CMP-2611-REDPACK:redemption_rate:0.1:CN-XX", "unknown region"),
        ("CMP-2611-REDPACK", "expected"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_spec(bad)
    # the regional spec wins over the all-regions one, whatever their order
    eff = Effects.from_specs(
        [
            parse_spec("CMP-2611-REDPACK:redemption_rate:0.1:CN-SD"),
            parse_spec("CMP-2611-REDPACK:redemption_rate:0"),
        ]
    )
    sd = [r.code for r in REGIONS].index("CN-SD")
    assert eff.delta[0][sd] == 0.1
    assert all(eff.delta[0][r] == 0.0 for r in range(len(REGIONS)) if r != sd)
    assert eff.delta[1] == [CAMPAIGNS[1].treatment_delta] * len(REGIONS)


def test_split_setting() -> None:
    from koxpulse.settings import load

    env = {"KOXPULSE_AB_SPLIT": "control=2, treatment=1"}
    assert load({}, env=env).ab_split == (("control", 2.0), ("treatment", 1.0))
    assert load({}, env={}).ab_split == ()
    # `--ab-split equal` on the command line wins over the environment
    assert load({"ab_split": ()}, env=env).ab_split == ()
    for bad in ("control", "control=0", "a=1,a=2", "=1"):
        with pytest.raises(ConfigError, match="KOXPULSE_AB_SPLIT"):
            load({}, env={"KOXPULSE_AB_SPLIT": bad})

"""A/B statistics: closed forms against scipy/statsmodels to 1e-9, and the operating
characteristics (coverage, false positives, peeking) over thousands of seeded simulations.

The simulations call the same functions the report uses, on arrays: one row per
simulated experiment. Tolerances are binomial: with 2,000 simulations a 95 % rate
has a standard error of 0.49 points, so [93.3 %, 96.7 %] is ±3.5 standard errors.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from koxpulse.experiments import distributions as dist
from koxpulse.experiments import stats
from koxpulse.experiments.stats import ArmStats, always_valid, lift, relative, srm

SIMS = 2_000
COVER_LO, COVER_HI = 0.933, 0.967
FPR_LO, FPR_HI = 0.033, 0.067


def test_doctests() -> None:
    from koxpulse.simulator import experiment

    for module in (dist, stats, experiment):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- closed forms against the references -------------------------------------------


@pytest.mark.parametrize("df", [1, 1.5, 2, 3, 7.3, 30, 250, 5_000])
def test_student_t_matches_scipy(df: float) -> None:
    for t in (-40.0, -6.0, -2.0, -0.5, 0.0, 0.7, 1.96, 3.5, 12.0):
        assert dist.t_sf(t, df) == pytest.approx(sps.t.sf(t, df), rel=1e-9, abs=1e-300)
    for p in (1e-8, 1e-3, 0.025, 0.2, 0.5, 0.8, 0.975, 0.9999):
        assert dist.t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 40])
def test_chi_square_matches_scipy(df: int) -> None:
    for x in (0.01, 0.5, 1.0, 3.84, 10.83, 30.0, 160.0):
        assert dist.chi2_sf(x, df) == pytest.approx(sps.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_normal_matches_scipy() -> None:
    for p in (1e-9, 0.001, 0.025, 0.5, 0.975):
        assert dist.norm_ppf(p) == pytest.approx(sps.norm.ppf(p), rel=1e-12)
    for x in (-8.0, -1.0, 0.0, 2.5, 9.0):
        assert dist.norm_sf(x) == pytest.approx(sps.norm.sf(x), rel=1e-12)


def test_welch_interval_and_test_match_scipy_and_statsmodels() -> None:
    rng = np.random.default_rng(1)
    for n_t, n_c in ((40, 55), (800, 700), (5_000, 5_300)):
        a = rng.lognormal(1.0, 0.8, n_t)
        b = rng.lognormal(0.9, 1.0, n_c)
        d = lift(ArmStats.from_users(a), ArmStats.from_users(b))
        low, high = stats.confidence_interval(d, 0.05)
        cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
        ref_low, ref_high = cm.tconfint_diff(alpha=0.05, usevar="unequal")
        assert float(low) == pytest.approx(ref_low, rel=1e-9)
        assert float(high) == pytest.approx(ref_high, rel=1e-9)
        ref = sps.ttest_ind(a, b, equal_var=False)
        assert float(stats.p_value(d)) == pytest.approx(ref.pvalue, rel=1e-9)
        t, df, p = stats.welch_test(a.mean(), a.var(ddof=1), n_t, b.mean(), b.var(ddof=1), n_c)
        assert t == pytest.approx(ref.statistic, rel=1e-9)
        assert df == pytest.approx(float(d.df), rel=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9)
        z, pz = stats.z_test(float(d.diff), float(d.se))
        ref_z, ref_pz = cm.ztest_ind(usevar="unequal")
        assert z == pytest.approx(ref_z, rel=1e-9)
        assert pz == pytest.approx(ref_pz, rel=1e-9)


def test_srm_matches_scipy_chisquare() -> None:
    for counts, shares in (
        ([50_400, 49_600], [0.5, 0.5]),
        ([3_310, 3_402, 3_288], [1, 1, 1]),
        ([7_100, 2_900], [0.7, 0.3]),
    ):
        total = sum(counts)
        ref = sps.chisquare(counts, [total * s / sum(shares) for s in shares])
        got = srm(counts, shares)
        assert got.chi2 == pytest.approx(ref.statistic, rel=1e-9)
        assert got.p == pytest.approx(ref.pvalue, rel=1e-9)


def test_srm_fixture_52_48_on_100k_users_is_flagged() -> None:
    s = srm([52_000, 48_000], [0.5, 0.5])
    assert s.chi2 == 160.0
    assert s.p < 1e-30 and s.flagged
    healthy = srm([50_150, 49_850], [0.5, 0.5])
    assert healthy.p == pytest.approx(0.3428, abs=1e-4) and not healthy.flagged
    assert not srm([70_100, 29_900], [0.7, 0.3]).flagged


def test_ratio_delta_method_equals_explicit_linearisation() -> None:
    rng = np.random.default_rng(2)
    x = 1 + rng.poisson(2.0, 3_000)
    y = rng.binomial(x, 0.4)
    arm = ArmStats.from_users(y, x)
    r = y.sum() / x.sum()
    explicit = np.var((y - r * x) / x.mean(), ddof=1) / len(x)
    var_l, _ = arm.linearised()
    assert float(arm.value) == pytest.approx(r, rel=1e-14)
    assert float(var_l) / len(x) == pytest.approx(explicit, rel=1e-12)


def test_cuped_equals_ols_with_a_treatment_dummy() -> None:
    """The pooled-within theta is OLS's slope on the covariate when the model has a
    treatment dummy; the adjusted difference is OLS's treatment coefficient."""
    rng = np.random.default_rng(3)
    n_t, n_c = 1_200, 1_000
    z = rng.gamma(2.0, 2.0, n_t + n_c)
    arm = np.r_[np.ones(n_t), np.zeros(n_c)]
    y = 3.0 + 0.8 * z + 0.5 * arm + rng.normal(0, 2.0, n_t + n_c)
    d = lift(
        ArmStats.from_users(y[:n_t], z=z[:n_t]),
        ArmStats.from_users(y[n_t:], z=z[n_t:]),
        cuped=True,
    )
    fit = OLS(y, np.column_stack([np.ones_like(y), arm, z])).fit()
    assert float(d.diff) == pytest.approx(fit.params[1], rel=1e-9)
    assert float(d.theta) == pytest.approx(fit.params[2], rel=1e-9)
    corr2 = np.corrcoef(y[n_t:], z[n_t:])[0, 1] ** 2
    assert float(d.variance_reduction) == pytest.approx(corr2, abs=0.05)


def test_mixture_sprt_is_the_normal_likelihood_ratio() -> None:
    """Lambda = N(diff; 0, V + tau2) / N(diff; 0, V): the closed form of the mixture."""
    for diff, var, n in ((0.02, 4e-5, 8_000), (-0.5, 0.01, 300), (0.0, 1e-3, 50_000)):
        s = always_valid(diff, var, n, alpha=0.05, planned_n=10_000)
        tau2 = float(s.tau2)
        lam = sps.norm.pdf(diff, 0, math.sqrt(var + tau2)) / sps.norm.pdf(diff, 0, math.sqrt(var))
        assert float(s.p) == pytest.approx(min(1.0, 1 / lam), rel=1e-9)
        # the interval is exactly where the test does not reject
        for edge in (float(s.low), float(s.high)):
            at = always_valid(edge - 0.0, var, n, alpha=0.05, planned_n=10_000)
            assert float(always_valid(diff - edge, var, n, planned_n=10_000).p) == pytest.approx(
                0.05, rel=1e-9
            )
            assert at.tau2 == pytest.approx(s.tau2)


# -- operating characteristics over seeded simulations -----------------------------


def _users(rng: np.random.Generator, sims: int, n: int, delta: float) -> dict[str, np.ndarray]:
    """Users with persistent heterogeneity: activity lam and redemption propensity b."""
    lam = rng.lognormal(0.0, 0.7, (sims, n))
    b = rng.beta(4.0, 6.0, (sims, n))  # mean 0.4, independent of activity
    scans = 1 + rng.poisson(lam)
    red = rng.binomial(scans, np.clip(b + delta, 0, 1))
    pre_scans = rng.poisson(lam)
    pre_red = rng.binomial(pre_scans, b)
    revenue = rng.gamma(2.0, 5.0 * lam) * (rng.random((sims, n)) < 0.3)
    pre_revenue = rng.gamma(2.0, 5.0 * lam) * (rng.random((sims, n)) < 0.3)
    return {
        "scans": scans,
        "red": red,
        "pre_scans": pre_scans,
        "pre_red": pre_red,
        "revenue": revenue,
        "pre_revenue": pre_revenue,
    }


def _linearised_pre(u: dict[str, np.ndarray]) -> np.ndarray:
    r = u["pre_red"].sum(axis=-1, keepdims=True) / u["pre_scans"].sum(axis=-1, keepdims=True)
    return u["pre_red"] - r * u["pre_scans"]


def _covered(low: np.ndarray, high: np.ndarray, truth: float) -> float:
    return float(np.mean((low <= truth) & (truth <= high)))


@pytest.fixture(scope="module")
def experiment_sims() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    rng = np.random.default_rng(20261116)
    delta = 0.03
    return _users(rng, SIMS, 1_000, delta), _users(rng, SIMS, 1_000, 0.0), delta


def test_ratio_intervals_cover_the_true_lift(experiment_sims) -> None:
    t, c, delta = experiment_sims
    zt, zc = _linearised_pre(t), _linearised_pre(c)
    at = ArmStats.from_users(t["red"], t["scans"], zt)
    ac = ArmStats.from_users(c["red"], c["scans"], zc)
    plain = lift(at, ac)
    adjusted = lift(at, ac, cuped=True)
    # b is independent of activity, so each arm's ratio is E[b] (+ delta): lift = delta
    cover_plain = _covered(*stats.confidence_interval(plain), delta)
    cover_cuped = _covered(*stats.confidence_interval(adjusted), delta)
    _, rlo, rhi = relative(adjusted)
    cover_rel = _covered(rlo, rhi, delta / 0.4)
    seq = always_valid(adjusted.diff, adjusted.var, at.n + ac.n, planned_n=2_000)
    cover_seq = _covered(seq.low, seq.high, delta)
    print(f"coverage plain {cover_plain:.4f} cuped {cover_cuped:.4f} relative {cover_rel:.4f}")
    assert COVER_LO <= cover_plain <= COVER_HI
    assert COVER_LO <= cover_cuped <= COVER_HI
    assert COVER_LO <= cover_rel <= COVER_HI
    assert cover_seq >= 0.95  # always valid: conservative at any single look
    # a persistent propensity makes the pre-period informative: CUPED must help (a little:
    # one or two pre-period scans say little about a user's propensity)
    reduction = float(np.median(adjusted.variance_reduction))
    print(f"median CUPED variance reduction (redemption rate): {reduction:.4f}")
    assert reduction > 0.01
    assert float(np.mean(adjusted.var < plain.var)) > 0.95


def test_mean_metric_intervals_cover_the_true_lift() -> None:
    rng = np.random.default_rng(7)
    n = 1_000
    base = _users(rng, SIMS, 2 * n, 0.0)
    # skewed, mostly-zero revenue (+1.5 CNY per treated user) and activity (+0.2 scans),
    # whose pre-period twin predicts it well
    for col, pre, effect in (("revenue", "pre_revenue", 1.5), ("scans", "pre_scans", 0.2)):
        y = base[col].astype(np.float64)
        y[:, :n] += effect
        at = ArmStats.from_users(y[:, :n], z=base[pre][:, :n])
        ac = ArmStats.from_users(y[:, n:], z=base[pre][:, n:])
        for cuped in (False, True):
            d = lift(at, ac, cuped=cuped)
            cover = _covered(*stats.confidence_interval(d), effect)
            print(f"{col} coverage cuped={cuped}: {cover:.4f}")
            assert COVER_LO <= cover <= COVER_HI
        reduction = float(np.median(d.variance_reduction))
        print(f"median CUPED variance reduction ({col}): {reduction:.4f}")
    # scans: CUPED removes corr(scans, pre_scans)^2 = var(lam)^2 / (E lam + var lam)^2
    m, v = math.exp(0.245), (math.exp(0.49) - 1) * math.exp(0.49)
    assert reduction == pytest.approx(v**2 / (m + v) ** 2, abs=0.02)


def test_a_a_false_positive_rate_is_nominal(experiment_sims) -> None:
    _, c, _ = experiment_sims
    half = c["scans"].shape[1] // 2
    a = ArmStats.from_users(c["red"][:, :half], c["scans"][:, :half], _linearised_pre(c)[:, :half])
    b = ArmStats.from_users(c["red"][:, half:], c["scans"][:, half:], _linearised_pre(c)[:, half:])
    for cuped in (False, True):
        fpr = float(np.mean(stats.p_value(lift(a, b, cuped=cuped)) < 0.05))
        print(f"A/A false positive rate cuped={cuped}: {fpr:.4f}")
        assert FPR_LO <= fpr <= FPR_HI
    seq = lift(a, b, cuped=True)
    seq_fpr = float(np.mean(always_valid(seq.diff, seq.var, a.n + b.n, planned_n=1_000).p < 0.05))
    assert seq_fpr <= 0.05


def _bernoulli_arm(n: np.ndarray, k: np.ndarray) -> ArmStats:
    """Sufficient statistics of 0/1 outcomes from counts (n users, k successes)."""
    n = n.astype(np.float64)
    p = k / n
    zero = np.zeros_like(p)
    return ArmStats(n, p, np.ones_like(p), zero, n * p * (1 - p), zero, zero, zero, zero, zero)


def _peeking(delta: float, seed: int, days: int = 14, per_day: int = 500) -> tuple[float, float]:
    """Share of experiments that ever reject over daily looks: naive t-test, mixture SPRT."""
    rng = np.random.default_rng(seed)
    base = 0.10
    kt = np.cumsum(rng.binomial(per_day, base + delta, (SIMS, days)), axis=1)
    kc = np.cumsum(rng.binomial(per_day, base, (SIMS, days)), axis=1)
    n = np.broadcast_to(per_day * np.arange(1, days + 1), (SIMS, days))
    d = lift(_bernoulli_arm(n, kt), _bernoulli_arm(n, kc))
    naive = (stats.p_value(d) < 0.05).any(axis=1).mean()
    seq = always_valid(d.diff, d.var, 2 * n, planned_n=2 * per_day * days)
    return float(naive), float((seq.p < 0.05).any(axis=1).mean())


def test_daily_peeking_inflates_the_naive_test_not_the_sequential_one() -> None:
    naive, sequential = _peeking(0.0, seed=11)
    print(f"A/A with 14 daily looks: naive {naive:.4f}, sequential {sequential:.4f}")
    assert naive > 0.15  # about four times the nominal 5 %
    assert sequential <= 0.05
    # and the sequential test still finds a real effect within the 14 days
    naive_power, power = _peeking(0.02, seed=12)
    assert power > 0.8 and naive_power >= power


def test_always_valid_interval_and_p_value_agree() -> None:
    rng = np.random.default_rng(5)
    diff = rng.normal(0, 0.02, 1_000)
    var = rng.uniform(1e-5, 1e-4, 1_000)
    s = always_valid(diff, var, 10_000, planned_n=5_000)
    outside = (s.low > 0) | (s.high < 0)
    assert np.array_equal(outside, s.p < 0.05)

"""A/B statistics over users: pure functions, no I/O, numpy-broadcastable.

Why users and not events: assignment is per user, so events of one user are not
independent. Every metric is a ratio of per-user sums, ``sum(y) / sum(x)``; a
per-user mean is the case ``x = 1``, a rate such as redemptions / scans uses the
delta method over user clusters. The same formulas serve one readout (scalars)
and thousands of simulated experiments at once (arrays with a leading axis), so
the tests check coverage with the code the report runs.

Conventions: ``t`` is the variant (treatment), ``c`` the control; variances are of
the estimate (already divided by n); intervals are two-sided at level 1 - alpha.

>>> t = ArmStats.from_users([3.0, 5.0, 4.0, 6.0])
>>> c = ArmStats.from_users([2.0, 4.0, 3.0, 3.0])
>>> d = lift(t, c)
>>> float(d.diff), round(float(d.df), 6)
(1.5, 5.068966)
>>> [round(float(v), 6) for v in confidence_interval(d)]
[-0.455307, 3.455307]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import distributions as dist

Array = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike
SRM_THRESHOLD = 0.001
"""An observed split this unlikely under the design means the assignment is broken."""


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm over its users: means and centred co-moments.

    ``y`` is the metric's numerator per user, ``x`` its denominator (1 for a mean),
    ``z`` a pre-period covariate for CUPED (0 when there is none). Co-moments are
    sums of products of deviations from the arm's means (two-pass, so large means
    do not eat the variance's digits).
    """

    n: Array
    my: Array
    mx: Array
    mz: Array
    cyy: Array
    cxx: Array
    czz: Array
    cxy: Array
    cyz: Array
    cxz: Array

    @classmethod
    def from_users(
        cls, y: ArrayLike, x: ArrayLike | None = None, z: ArrayLike | None = None
    ) -> ArmStats:
        """Statistics over the last axis (users); leading axes are independent experiments."""
        ya = _f(y)
        xa = np.ones_like(ya) if x is None else np.broadcast_to(_f(x), ya.shape)
        za = np.zeros_like(ya) if z is None else np.broadcast_to(_f(z), ya.shape)
        n = np.full(ya.shape[:-1], ya.shape[-1], dtype=np.float64)
        my, mx, mz = ya.mean(axis=-1), xa.mean(axis=-1), za.mean(axis=-1)
        dy, dx, dz = ya - my[..., None], xa - mx[..., None], za - mz[..., None]
        return cls(
            n=n,
            my=my,
            mx=mx,
            mz=mz,
            cyy=(dy * dy).sum(axis=-1),
            cxx=(dx * dx).sum(axis=-1),
            czz=(dz * dz).sum(axis=-1),
            cxy=(dx * dy).sum(axis=-1),
            cyz=(dy * dz).sum(axis=-1),
            cxz=(dx * dz).sum(axis=-1),
        )

    @property
    def value(self) -> Array:
        """The metric: sum(y) / sum(x)."""
        return self.my / self.mx

    def linearised(self) -> tuple[Array, Array]:
        """Sample variance of the ratio's influence function (y - R x) / mean(x), and its
        covariance with z: what the delta method and CUPED need."""
        r = self.value
        dof = self.n - 1
        var_l = (self.cyy - 2 * r * self.cxy + r * r * self.cxx) / dof / self.mx**2
        cov_lz = (self.cyz - r * self.cxz) / dof / self.mx
        return var_l, cov_lz


@dataclass(frozen=True)
class Lift:
    """Variant minus control, with the variance of each arm's estimate."""

    control: Array
    treatment: Array
    var_control: Array
    var_treatment: Array
    n_control: Array
    n_treatment: Array
    variance_reduction: Array
    """1 - var(CUPED difference) / var(plain difference); 0 without CUPED."""
    theta: Array

    @property
    def diff(self) -> Array:
        return self.treatment - self.control

    @property
    def var(self) -> Array:
        return self.var_treatment + self.var_control

    @property
    def se(self) -> Array:
        return np.sqrt(self.var)

    @property
    def df(self) -> Array:
        """Welch-Satterthwaite degrees of freedom."""
        vt, vc = self.var_treatment, self.var_control
        return (vt + vc) ** 2 / (vt**2 / (self.n_treatment - 1) + vc**2 / (self.n_control - 1))


def lift(t: ArmStats, c: ArmStats, *, cuped: bool = False) -> Lift:
    """Difference of the arms' metrics; with ``cuped``, each arm is adjusted by
    theta * (its covariate mean - the pooled covariate mean), theta pooled within arms.

    Why pooled-within theta: it is the regression slope of the metric's influence
    function on the covariate, estimated from both arms without letting the
    treatment effect leak into it; the adjustment has mean zero because the
    covariate is measured before exposure and so cannot depend on the arm.
    """
    var_lt, cov_t = t.linearised()
    var_lc, cov_c = c.linearised()
    raw_t, raw_c = var_lt / t.n, var_lc / c.n
    if not cuped:
        zero = np.zeros_like(raw_t)
        return Lift(c.value, t.value, raw_c, raw_t, c.n, t.n, zero, zero)
    dof_t, dof_c = t.n - 1, c.n - 1
    vz_t, vz_c = t.czz / dof_t, c.czz / dof_c
    den = dof_t * vz_t + dof_c * vz_c
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.where(den > 0, (dof_t * cov_t + dof_c * cov_c) / np.where(den > 0, den, 1), 0.0)
    mz = (t.n * t.mz + c.n * c.mz) / (t.n + c.n)
    adj_t = t.value - theta * (t.mz - mz)
    adj_c = c.value - theta * (c.mz - mz)
    var_t = (var_lt - 2 * theta * cov_t + theta**2 * vz_t) / t.n
    var_c = (var_lc - 2 * theta * cov_c + theta**2 * vz_c) / c.n
    with np.errstate(invalid="ignore", divide="ignore"):
        reduction = 1.0 - (var_t + var_c) / (raw_t + raw_c)
    return Lift(adj_c, adj_t, var_c, var_t, c.n, t.n, reduction, theta)


def _vec(fn: Any, *args: ArrayLike) -> Array:
    arrays = np.broadcast_arrays(*(_f(a) for a in args))
    out = np.vectorize(fn, otypes=[np.float64])(*arrays)
    return _f(out)


def t_critical(alpha: float, df: ArrayLike) -> Array:
    """Two-sided critical value of Student's t (vectorised over df)."""
    return _vec(lambda d: dist.t_ppf(1 - alpha / 2, d), df)


def confidence_interval(d: Lift, alpha: float = 0.05) -> tuple[Array, Array]:
    """Welch interval for the absolute difference."""
    half = t_critical(alpha, d.df) * d.se
    return d.diff - half, d.diff + half


def p_value(d: Lift) -> Array:
    """Two-sided Welch t-test of no difference."""
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = d.diff / d.se
    return _vec(lambda s, df: 2 * dist.t_sf(abs(s), df), stat, d.df)


def relative(d: Lift, alpha: float = 0.05) -> tuple[Array, Array, Array]:
    """Relative lift treatment / control - 1 and its delta-method (normal) interval.

    >>> d = Lift(*(np.float64(v) for v in (0.40, 0.44, 1e-4, 1e-4, 1e4, 1e4, 0.0, 0.0)))
    >>> [round(float(v), 6) for v in relative(d)]
    [0.1, 0.027158, 0.172842]
    """
    rel = d.treatment / d.control - 1
    var = d.var_treatment / d.control**2 + d.treatment**2 * d.var_control / d.control**4
    half = dist.norm_ppf(1 - alpha / 2) * np.sqrt(var)
    return rel, rel - half, rel + half


def welch_test(
    mean_t: float, var_t: float, n_t: int, mean_c: float, var_c: float, n_c: int
) -> tuple[float, float, float]:
    """Welch's t statistic, degrees of freedom and two-sided p-value from summaries
    (sample variances with ddof=1): the closed form the tests hold scipy to.

    >>> [round(v, 6) for v in welch_test(1.2, 1.0, 50, 1.0, 2.0, 60)]
    [0.866025, 105.366743, 0.388444]
    """
    vt, vc = var_t / n_t, var_c / n_c
    stat = (mean_t - mean_c) / math.sqrt(vt + vc)
    df = (vt + vc) ** 2 / (vt**2 / (n_t - 1) + vc**2 / (n_c - 1))
    return stat, df, 2 * dist.t_sf(abs(stat), df)


def z_test(diff: float, se: float) -> tuple[float, float]:
    """Two-sided z-test: (statistic, p-value).

    >>> [round(v, 6) for v in z_test(0.03, 0.01)]
    [3.0, 0.0027]
    """
    stat = diff / se
    return stat, 2 * dist.norm_sf(abs(stat))


@dataclass(frozen=True)
class Srm:
    """Sample-ratio mismatch: does the observed split fit the designed one?"""

    chi2: float
    df: int
    p: float
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    flagged: bool


def srm(counts: Sequence[int], shares: Sequence[float], threshold: float = SRM_THRESHOLD) -> Srm:
    """Pearson chi-square of users per arm against the design's shares.

    >>> s = srm([52_000, 48_000], [0.5, 0.5])
    >>> s.chi2, s.flagged
    (160.0, True)
    >>> srm([5_010, 4_990], [0.5, 0.5]).flagged
    False
    """
    if len(counts) != len(shares) or len(counts) < 2:
        raise ValueError("srm needs one expected share per arm and at least two arms")
    total = float(sum(counts))
    weight = float(sum(shares))
    if total <= 0 or weight <= 0 or min(shares) <= 0:
        raise ValueError("srm needs users and positive shares")
    expected = tuple(total * s / weight for s in shares)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    p = dist.chi2_sf(chi2, len(counts) - 1)
    return Srm(
        chi2=chi2,
        df=len(counts) - 1,
        p=p,
        observed=tuple(c / total for c in counts),
        expected=tuple(s / weight for s in shares),
        flagged=p < threshold,
    )


def mixing_rho2(alpha: float, planned_n: float) -> float:
    """Mixing scale (per unit of sample) that makes the always-valid interval narrowest
    when ``planned_n`` users have been seen (Howard et al. 2021, normal mixture)."""
    g = 2 * math.log(1 / alpha)
    return (g + math.log(1 + g)) / planned_n


@dataclass(frozen=True)
class Sequential:
    """Always-valid inference: valid however often, and whenever, it is looked at."""

    p: Array
    """Always-valid p-value 1 / Lambda (capped at 1) of the mixture SPRT."""
    low: Array
    high: Array
    tau2: Array
    """Variance of the normal mixing distribution over the true difference."""


def always_valid(
    diff: ArrayLike, var: ArrayLike, n: ArrayLike, *, alpha: float = 0.05, planned_n: float
) -> Sequential:
    """Mixture SPRT with a normal mixture N(0, tau2) over the difference (Johari et al.
    2017; the same boundary as the GAVI asymptotic confidence sequence).

    ``var`` is the estimate's variance and ``n`` the users behind it; tau2 = rho2 * n * var
    keeps the mixture fixed as data accrue (n * var tends to the per-user variance).
    The p-value is 1 / Lambda with Lambda = sqrt(V / (V + tau2)) *
    exp(diff^2 tau2 / (2 V (V + tau2))); the interval is where Lambda < 1 / alpha.

    >>> s = always_valid(0.03, 1e-4, 10_000, planned_n=10_000)
    >>> round(float(s.low), 6), round(float(s.high), 6), round(float(s.p), 6)
    (-0.000352, 0.060352, 0.054948)
    """
    d, v, nn = _f(diff), _f(var), _f(n)
    nr = nn * mixing_rho2(alpha, planned_n)
    tau2 = nr * v
    radius = np.sqrt(v * (1 + 1 / nr) * (np.log1p(nr) + 2 * math.log(1 / alpha)))
    log_lambda = -0.5 * np.log1p(nr) + d * d * nr / (2 * v * (1 + nr))
    p = np.minimum(1.0, np.exp(-log_lambda))
    return Sequential(p=p, low=d - radius, high=d + radius, tau2=tau2)

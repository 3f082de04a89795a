"""The A/B readout: users per arm in, comparisons and plain-language verdicts out (no I/O).

Why the headline is CUPED-adjusted and sequential: readers look every day and act
on what they see, so the verdict says "final" only when the always-valid interval
(valid under any amount of peeking) excludes zero and the split is healthy; the
fixed-horizon interval and the unadjusted numbers are reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from koxpulse.errors import ConfigError

from . import stats
from .metrics import METRICS, Metric

Array = npt.NDArray[Any]

USER_COLUMNS = (
    "scans",
    "redemptions",
    "orders",
    "revenue",
    "converted",
    "pre_scans",
    "pre_redemptions",
    "pre_orders",
    "pre_revenue",
)


@dataclass(frozen=True)
class Design:
    control: str = "control"
    split: tuple[tuple[str, float], ...] = ()
    """Expected share per variant; empty means equal shares."""
    alpha: float = 0.05
    planned_users: int = 20_000
    """Users (both arms) at which the always-valid interval is tuned to be narrowest."""
    exclude_fraud: bool = False


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Estimate:
    control: float
    treatment: float
    absolute: Interval
    relative: Interval
    p: float
    se: float


@dataclass(frozen=True)
class Comparison:
    metric: str
    label: str
    kind: str
    variant: str
    control_users: int
    treatment_users: int
    plain: Estimate
    cuped: Estimate | None
    variance_reduction: float | None
    """Share of the difference's variance that CUPED removed (None: no pre-period data)."""
    sequential: Interval
    sequential_p: float
    mixing_variance: float
    significant: bool
    final: bool
    verdict: str

    @property
    def headline(self) -> Estimate:
        return self.cuped if self.cuped is not None else self.plain


@dataclass(frozen=True)
class Report:
    campaign: str
    filters: dict[str, str]
    design: Design
    users: dict[str, int]
    """Users analysed per variant (after exclusions)."""
    exposed: dict[str, int]
    """Users exposed per variant (first-scan variant), before exclusions."""
    multi_variant: dict[str, int]
    fraud_flagged: dict[str, int]
    fraud_excluded: int
    srm: stats.Srm
    srm_text: str
    first_exposure_ms: int | None
    last_exposure_ms: int | None
    comparisons: list[Comparison] = field(default_factory=list)


def _count_by(variants: Array, mask: Array, names: Sequence[str]) -> dict[str, int]:
    return {v: int(np.count_nonzero(mask & (variants == v))) for v in names}


def _shares(design: Design, names: Sequence[str]) -> list[float]:
    if not design.split:
        return [1.0] * len(names)
    given = dict(design.split)
    missing = [v for v in names if v not in given]
    if missing:
        raise ConfigError(
            f"the expected split ({', '.join(f'{k}={v:g}' for k, v in design.split)}) "
            f"names no share for variant {', '.join(missing)}"
        )
    return [given[v] for v in names]


def _estimate(d: stats.Lift, alpha: float) -> Estimate:
    lo, hi = stats.confidence_interval(d, alpha)
    rel, rlo, rhi = stats.relative(d, alpha)
    return Estimate(
        control=float(d.control),
        treatment=float(d.treatment),
        absolute=Interval(float(d.diff), float(lo), float(hi)),
        relative=Interval(float(rel), float(rlo), float(rhi)),
        p=float(stats.p_value(d)),
        se=float(d.se),
    )


def compare(
    metric: Metric,
    users: Mapping[str, Array],
    treated: Array,
    control: Array,
    variant: str,
    design: Design,
    srm_ok: bool,
) -> Comparison:
    """One metric, one variant against control, over the analysed users."""
    y, x = metric.columns(users)
    z = metric.covariate(users)
    t = stats.ArmStats.from_users(y[treated], None if x is None else x[treated], z[treated])
    c = stats.ArmStats.from_users(y[control], None if x is None else x[control], z[control])
    plain = stats.lift(t, c)
    has_pre = float(t.czz + c.czz) > 0
    adjusted = stats.lift(t, c, cuped=True) if has_pre else None
    head = adjusted if adjusted is not None else plain
    n = int(t.n + c.n)
    seq = stats.always_valid(
        head.diff, head.var, n, alpha=design.alpha, planned_n=design.planned_users
    )
    plain_est = _estimate(plain, design.alpha)
    cuped_est = _estimate(adjusted, design.alpha) if adjusted is not None else None
    head_est = cuped_est if cuped_est is not None else plain_est
    sequential = Interval(float(head.diff), float(seq.low), float(seq.high))
    significant = not head_est.absolute.low <= 0.0 <= head_est.absolute.high
    seq_excludes = not sequential.low <= 0.0 <= sequential.high
    final = seq_excludes and srm_ok
    comp = Comparison(
        metric=metric.name,
        label=metric.label,
        kind=metric.kind,
        variant=variant,
        control_users=int(c.n),
        treatment_users=int(t.n),
        plain=plain_est,
        cuped=cuped_est,
        variance_reduction=float(adjusted.variance_reduction) if adjusted is not None else None,
        sequential=sequential,
        sequential_p=float(seq.p),
        mixing_variance=float(seq.tau2),
        significant=significant,
        final=final,
        verdict="",
    )
    return _with_verdict(comp, design, srm_ok, n)


def build_report(
    campaign: str,
    users: Mapping[str, Array],
    metric_names: Sequence[str],
    design: Design,
    filters: Mapping[str, str] | None = None,
) -> Report:
    """Exclusions, the split check and every comparison for one campaign."""
    variants = np.asarray(users["variant"]).astype(str)
    names = sorted(set(variants.tolist()))
    if design.control not in names:
        raise ConfigError(
            f"campaign {campaign} has no users in control variant {design.control!r} "
            f"(variants: {', '.join(names) or 'none'}; set --ab-control)"
        )
    if len(names) < 2:
        raise ConfigError(f"campaign {campaign} has only variant {names[0]}: nothing to compare")
    names = [design.control] + [v for v in names if v != design.control]
    everyone = np.ones(len(variants), dtype=bool)
    multi = np.asarray(users["multi_variant"]).astype(bool)
    flagged = np.asarray(users["fraud_user"]).astype(bool) | np.asarray(
        users["fraud_device"]
    ).astype(bool)
    keep = ~multi & (~flagged if design.exclude_fraud else everyone)
    data = {k: np.asarray(users[k], dtype=np.float64)[keep] for k in USER_COLUMNS}
    data["pre_converted"] = (data["pre_orders"] > 0).astype(np.float64)
    kept = variants[keep]
    counts = _count_by(kept, np.ones(len(kept), dtype=bool), names)
    if min(counts.values()) < 2:
        raise ConfigError(
            f"campaign {campaign}: every variant needs at least 2 analysed users, have "
            + ", ".join(f"{v} {n}" for v, n in counts.items())
        )
    shares = _shares(design, names)
    split = stats.srm([counts[v] for v in names], shares)
    report = Report(
        campaign=campaign,
        filters=dict(filters or {}),
        design=design,
        users=counts,
        exposed=_count_by(variants, everyone, names),
        multi_variant=_count_by(variants, multi, names),
        fraud_flagged=_count_by(variants, flagged & ~multi, names),
        fraud_excluded=int(np.count_nonzero(flagged & ~multi)) if design.exclude_fraud else 0,
        srm=split,
        srm_text=_srm_text(split, names),
        first_exposure_ms=_edge(users, min),
        last_exposure_ms=_edge(users, max),
    )
    control = kept == design.control
    for name in metric_names:
        metric = METRICS[name]
        for v in names[1:]:
            report.comparisons.append(
                compare(metric, data, kept == v, control, v, design, not split.flagged)
            )
    return report


def _edge(users: Mapping[str, Array], pick: Any) -> int | None:
    ms = users.get("first_exposure_ms")
    return int(pick(ms)) if ms is not None and len(ms) else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _srm_text(s: stats.Srm, names: Sequence[str]) -> str:
    obs = " / ".join(_pct(o) for o in s.observed)
    exp = " / ".join(_pct(e) for e in s.expected)
    arms = " / ".join(names)
    p = "p < 0.001" if s.p < 0.001 else f"p = {s.p:.3f}"
    if s.flagged:
        return (
            f"the split is broken: {arms} observed {obs} against {exp} by design "
            f"(chi-square {s.chi2:.1f}, {p}); do not act on this result until the "
            "assignment is fixed"
        )
    return f"the split is healthy ({arms} {obs} against {exp}, {p})"


def amount(kind: str, value: float, *, signed: bool = False) -> str:
    """A value in the metric's unit: percentage points for rates, CNY for money."""
    sign = "+" if signed else ""
    if kind == "rate":
        return f"{100 * value:{sign}.1f}"
    if kind == "money":
        return f"{value:{sign}.2f}"
    return f"{value:{sign}.3f}"


def unit(kind: str) -> str:
    return {"rate": " pts", "money": " CNY"}.get(kind, "")


def _fmt_p(p: float) -> str:
    if p < 0.0001:
        return "p < 0.0001"
    return f"p = {p:.4f}" if p < 0.01 else f"p = {p:.3f}"


def _with_verdict(c: Comparison, design: Design, srm_ok: bool, n: int) -> Comparison:
    h = c.headline
    a = h.absolute
    level = round(100 * (1 - design.alpha))
    span = f"[{amount(c.kind, a.low)}, {amount(c.kind, a.high)}]"
    size = f"{amount(c.kind, abs(a.estimate))}{unit(c.kind)} {span}"
    rel = h.relative
    rel_txt = (
        f"{rel.estimate:+.1%} [{rel.low:+.1%}, {rel.high:+.1%}]"
        if math.isfinite(rel.estimate)
        else "relative lift undefined"
    )
    if c.significant:
        verb = "raises" if a.estimate > 0 else "lowers"
        what = f"variant {c.variant} {verb} {c.label} by {size} ({rel_txt}, {_fmt_p(h.p)})"
    else:
        what = (
            f"variant {c.variant} shows no clear change in {c.label}: "
            f"{amount(c.kind, a.estimate, signed=True)}{unit(c.kind)} {span} ({_fmt_p(h.p)})"
        )
    if c.cuped is not None and c.variance_reduction is not None:
        if c.variance_reduction >= 0.01:
            what += f"; CUPED removed {c.variance_reduction:.0%} of the variance"
        else:
            what += "; pre-period activity explained almost none of the variance"
    seq = c.sequential
    seq_span = f"[{amount(c.kind, seq.low)}, {amount(c.kind, seq.high)}]"
    if not srm_ok:
        status = "the result cannot be trusted while the split is broken"
    elif c.final:
        status = (
            f"the result is final: the always-valid {level} % interval {seq_span} excludes "
            "zero, so reading it every day has not inflated the error rate"
        )
    elif c.significant:
        status = (
            f"keep collecting: significant at a fixed horizon, but the always-valid "
            f"interval {seq_span} still includes zero"
        )
    elif n >= design.planned_users:
        status = (
            f"the planned {design.planned_users:,} users are reached and the always-valid "
            f"interval {seq_span} includes zero: any effect is smaller than that"
        )
    else:
        status = f"keep collecting (always-valid interval {seq_span})"
    split = "the split is healthy" if srm_ok else "the split is broken"
    verdict = f"{what}; {split}; {status}."
    return replace(c, verdict=verdict)

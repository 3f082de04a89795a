"""Experiments with a chosen true effect: ``CAMPAIGN:METRIC:EFFECT[:REGION]``.

Why a spec and not a new world: the default stream must stay byte-identical (tests and
detector calibration depend on it), so a spec only replaces the treatment's uplift
of the campaigns and regions it names; without specs every campaign keeps its
built-in ``treatment_delta``.

Why the realised effect is recorded too: the simulator knows both potential
outcomes of every scan (its uniform draw decides redemption under either arm), so
it can count the redemptions the treatment adds among the scans it actually wrote.
That sample effect, divided by the campaign's scans, is exactly what the
difference in redemption rates estimates; the design effect is slightly larger
because redemptions that would fall after the run's end are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .world import CAMPAIGNS, REGIONS

METRICS = ("redemption_rate",)
"""Metrics a spec can move: the probability that a scanned code is redeemed."""
_CAMPAIGN_INDEX = {c.campaign_id: i for i, c in enumerate(CAMPAIGNS)}
_REGION_INDEX = {r.code: i for i, r in enumerate(REGIONS)}


@dataclass(frozen=True)
class ExperimentSpec:
    campaign_id: str
    metric: str
    effect: float
    """Absolute change of the treatment's redemption probability against control."""
    region: str | None = None
    """None: every region."""


def parse_spec(text: str) -> ExperimentSpec:
    """Parse ``CAMPAIGN:METRIC:EFFECT[:REGION]`` (no region: every region).

    >>> parse_spec("CMP-2611-REDPACK:redemption_rate:0.05:CN-SD").effect
    0.05
    """
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"{text!r}: expected CAMPAIGN:METRIC:EFFECT[:REGION]")
    campaign, metric, effect_text = parts[:3]
    region = parts[3] if len(parts) == 4 else None
    if campaign not in _CAMPAIGN_INDEX:
        raise ValueError(f"{text!r}: unknown campaign; known: {', '.join(_CAMPAIGN_INDEX)}")
    if metric not in METRICS:
        raise ValueError(f"{text!r}: unknown metric; known: {', '.join(METRICS)}")
    try:
        effect = float(effect_text)
    except ValueError as exc:
        raise ValueError(f"{text!r}: effect {effect_text!r} is not a number") from exc
    if not -0.3 <= effect <= 0.4:
        raise ValueError(f"{text!r}: effect must be within [-0.3, 0.4] (a probability change)")
    if region is not None and region not in _REGION_INDEX:
        raise ValueError(f"{text!r}: unknown region; known: {', '.join(_REGION_INDEX)}")
    return ExperimentSpec(campaign, metric, effect, region)


@dataclass
class Effects:
    """Treatment uplift per (campaign, region), and what the run realised of it."""

    specs: tuple[ExperimentSpec, ...] = ()
    delta: list[list[float]] = field(default_factory=list)
    """delta[campaign][region]: the treatment's absolute uplift of redemption probability."""
    scans: list[list[int]] = field(default_factory=list)
    marginal: list[list[int]] = field(default_factory=list)
    """Redemptions written under one arm that the other arm would not have (signed)."""

    @classmethod
    def from_specs(cls, specs: Sequence[ExperimentSpec]) -> Effects:
        delta = [[c.treatment_delta] * len(REGIONS) for c in CAMPAIGNS]
        # a spec for every region first, then the region-specific ones win
        for spec in sorted(specs, key=lambda s: s.region is not None):
            ci = _CAMPAIGN_INDEX[spec.campaign_id]
            regions = range(len(REGIONS)) if spec.region is None else [_REGION_INDEX[spec.region]]
            for ri in regions:
                delta[ci][ri] = spec.effect
        zeros = [[0] * len(REGIONS) for _ in CAMPAIGNS]
        return cls(tuple(specs), delta, zeros, [row[:] for row in zeros])

    def summary(self) -> list[dict[str, Any]]:
        """Per campaign: design and realised effect, per region and over all regions."""
        out = []
        for ci, camp in enumerate(CAMPAIGNS):
            regions = []
            for ri, region in enumerate(REGIONS):
                n = self.scans[ci][ri]
                regions.append(
                    {
                        "region": region.code,
                        "design_effect": self.delta[ci][ri],
                        "scans": n,
                        "marginal_redemptions": self.marginal[ci][ri],
                        "sample_effect": self.marginal[ci][ri] / n if n else None,
                    }
                )
            n_all = sum(self.scans[ci])
            out.append(
                {
                    "campaign_id": camp.campaign_id,
                    "metric": "redemption_rate",
                    "kind": "absolute_delta",
                    "scans": n_all,
                    "marginal_redemptions": sum(self.marginal[ci]),
                    "sample_effect": sum(self.marginal[ci]) / n_all if n_all else None,
                    "regions": regions,
                }
            )
        return out

"""The metrics an A/B readout knows: each one a ratio of per-user sums of ``ab_users`` columns.

Why each metric names its own pre-period covariate: CUPED only helps when the
covariate predicts the metric, and the best predictor of a user's behaviour after
exposure is the same behaviour before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    numerator: str
    denominator: str | None
    """None: a mean per exposed user; else a ratio over user clusters (delta method)."""
    pre_numerator: str
    pre_denominator: str | None
    kind: str
    """How to say it: ``rate`` (in percentage points), ``count`` or ``money`` (CNY)."""

    @property
    def is_ratio(self) -> bool:
        return self.denominator is not None

    def columns(self, users: Mapping[str, Array]) -> tuple[Array, Array | None]:
        y = users[self.numerator]
        return y, None if self.denominator is None else users[self.denominator]

    def covariate(self, users: Mapping[str, Array]) -> Array:
        """Pre-period value per user; for ratios the linearised pre-period ratio
        ``pre_y - R_pre * pre_x`` (R_pre pooled), which is 0 for a user with no history."""
        z = users[self.pre_numerator].astype(np.float64)
        if self.pre_denominator is None:
            return z
        x = users[self.pre_denominator].astype(np.float64)
        total = float(x.sum())
        return z - (float(z.sum()) / total) * x if total > 0 else z


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "redemption_rate",
            "redemption rate",
            "redemptions",
            "scans",
            "pre_redemptions",
            "pre_scans",
            "rate",
        ),
        Metric("conversion", "conversion", "converted", None, "pre_converted", None, "rate"),
        Metric(
            "revenue_per_user", "revenue per user", "revenue", None, "pre_revenue", None, "money"
        ),
        Metric("orders_per_user", "orders per user", "orders", None, "pre_orders", None, "count"),
        Metric("scans_per_user", "scans per user", "scans", None, "pre_scans", None, "count"),
        Metric(
            "redemptions_per_user",
            "redemptions per user",
            "redemptions",
            None,
            "pre_redemptions",
            None,
            "count",
        ),
    )
}
DEFAULT_METRICS = ("redemption_rate", "conversion", "revenue_per_user")

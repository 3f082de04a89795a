"""Prometheus metric names the dashboards may read, in one place for the lead to reconcile.

``exported_sample_names()`` is what :class:`koxpulse.metrics.Metrics` registers today.
``PLANNED`` lists metrics another branch is adding (Kafka lag, window delay, sink
latency and errors, Alertmanager delivery, event-to-alert latency); the *Pipeline
health* dashboard already has panels for them. Once that branch is merged, every
name here should move into ``Metrics`` and this list should become empty: the test
``test_promql_names_exported_or_planned_metrics`` says which are still missing.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

# --- PLANNED, not exported by koxpulse.metrics yet (reconcile after merging) ----------
PLANNED: dict[str, Kind] = {}
# --------------------------------------------------------------------------------------


def sample_names(name: str, kind: Kind) -> set[str]:
    """The series names Prometheus stores for one metric."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def planned_sample_names() -> set[str]:
    out: set[str] = set()
    for name, kind in PLANNED.items():
        out |= sample_names(name, kind)
    return out


def exported_sample_names() -> set[str]:
    """Every sample name the pipeline's registry exposes (``*_total``, ``*_bucket``, ...)."""
    from koxpulse.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type in ("gauge", "untyped", "unknown"):
            names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
        # a labelled metric has no samples until a label set is used: name them by type
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= sample_names(family.name, "histogram")
    return names

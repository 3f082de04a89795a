"""Putting a run together: world, background, incidents, delivery order, invalid lines,
ground truth, and the four files."""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .delivery import DUP_RATE, LATE_RATE, plan_delivery
from .events import EventStore
from .experiment import Effects, ExperimentSpec
from .incidents import IncidentPlan, inject, labels_json, plan_incidents
from .invalid import InvalidFactory, plan_kinds
from .timefmt import FORMAT_NAMES, datetime_to_ms, iso_z
from .traffic import REDEEM_P, Clock, generate_background
from .truth import ALLOWED_LATENESS_MS, compute_truth
from .world import ASSIGNMENT_RULE, CAMPAIGNS, CHANNELS, SKUS, VARIANTS, World
from .writer import CompanionPaths, companion_paths, open_stream, write_json, write_jsonl

DEFAULT_START = datetime(2026, 11, 16, 0, 0, 0, tzinfo=timezone(timedelta(hours=8)))
"""A Monday, midnight China time."""

_CHUNK = 20_000


@dataclass(frozen=True)
class SimulationSummary:
    lines: int
    """Every line in the file: valid events, duplicate copies and invalid lines."""
    valid_events: int
    """Distinct valid events (each event_id once), late ones included."""
    duplicates: int
    invalid_lines: int
    late_events: int
    incidents: int
    events_by_type: Mapping[str, int]
    out: Path = field(default=Path())
    companions: CompanionPaths | None = None


def _experiment(effects: Effects | None = None) -> dict[str, Any]:
    out = _default_experiment()
    if effects is not None:
        out["specs"] = [
            {
                "campaign_id": s.campaign_id,
                "metric": s.metric,
                "effect": s.effect,
                "region": s.region,
            }
            for s in effects.specs
        ]
        out["effects"] = effects.summary()
        out["effects_note"] = (
            "design_effect: the treatment's absolute uplift of a scan's redemption "
            "probability in that region (built-in treatment_delta where no spec names it). "
            "sample_effect: redemptions the treatment adds among the scans written "
            "(both potential outcomes of each scan are known), divided by the campaign's "
            "scans: the estimand of the difference in redemption rates. Incident scans "
            "are not counted."
        )
    return out


def _default_experiment() -> dict[str, Any]:
    return {
        "unit": "user",
        "assignment": ASSIGNMENT_RULE,
        "split": {"control": 0.5, "treatment": 0.5},
        "variants": list(VARIANTS),
        "outcome": "probability that a scanned code is redeemed (redemptions / first scans)",
        "base_redemption_probability": dict(zip(CHANNELS, REDEEM_P, strict=True)),
        "campaigns": [
            {
                "campaign_id": c.campaign_id,
                "description": c.description,
                "skus": [s.sku_id for s in SKUS if s.campaign == i],
                "true_effect": {
                    "metric": "redemption_probability",
                    "kind": "absolute_delta",
                    "treatment_minus_control": c.treatment_delta,
                },
            }
            for i, c in enumerate(CAMPAIGNS)
        ],
        "notes": (
            "Treatment adds treatment_minus_control to the channel's base probability. "
            "Redemptions that would fall after the run's end are not emitted, so observed "
            "rates of slow channels (ecommerce, median delay 2 h) are lower near the end; "
            "background redemption probability is also suppressed inside "
            "high_scan_low_redemption incident windows."
        ),
    }


def simulate(
    out: Path,
    *,
    hours: float,
    seed: int,
    scale: float = 1.0,
    incidents: bool = False,
    start: datetime = DEFAULT_START,
    experiments: Sequence[ExperimentSpec] = (),
    strength: float = 1.0,
) -> SimulationSummary:
    """Write a reproducible event file plus its ground truth, labels and expectations.

    ``experiments`` set the treatment's true effect per campaign and region; the
    design and the realised effects go to the expectations file. ``strength`` (0 to 1]
    scales how far the incidents that bend the usual level (高扫码低核销, kpi_anomaly)
    move it: 1 is the default collapse and surge, 0.5 half of each change (redemptions
    at about half, orders at about half, scans at 2.5x); fraud incidents keep their form."""
    # A run allocates millions of long-lived objects and no cycles: the cyclic collector
    # would rescan them over and over for nothing (it cost a third of the run time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate(
            Path(out),
            hours=hours,
            seed=seed,
            scale=scale,
            incidents=incidents,
            start=start,
            strength=strength,
            experiments=tuple(experiments),
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _simulate(
    out: Path,
    *,
    hours: float,
    seed: int,
    scale: float,
    incidents: bool,
    start: datetime,
    experiments: tuple[ExperimentSpec, ...] = (),
    strength: float = 1.0,
) -> SimulationSummary:
    if not (isinstance(hours, int | float) and math.isfinite(hours) and hours > 0):
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if not (isinstance(strength, int | float) and 0 < strength <= 1):
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    paths = companion_paths(out)

    start_ms = datetime_to_ms(start)
    end_ms = start_ms + max(1000, round(hours * 3_600_000))
    clock = Clock(start_ms, end_ms)
    world = World(seed, scale)
    store = EventStore(seed)
    plan = plan_incidents(world, clock, seed, strength) if incidents else IncidentPlan()
    effects = Effects.from_specs(experiments) if experiments else None
    supply = generate_background(world, store, clock, plan.modifiers, seed, effects)
    if incidents:
        inject(plan, world, store, clock, seed)
    labels = labels_json(plan)

    delivery = plan_delivery(store, start_ms, end_ms, seed)
    file_seqs = delivery.file_seqs
    truth = compute_truth(store, file_seqs)

    rng = random.Random(f"{seed}:invalid")
    kinds = plan_kinds(len(file_seqs), rng)
    n_valid = len(file_seqs)
    # spread evenly in time (not in lines: at small scales the first second holds every
    # initial shipment); insert after the p-th valid line, never first, never last (an
    # empty last line would be indistinguishable from the file's final newline)
    newest = np.maximum.accumulate(np.frombuffer(store.ts, dtype=np.int64)[file_seqs])
    when = [start_ms + int(rng.random() * (end_ms - start_ms)) for _ in kinds]
    found = np.searchsorted(newest, np.asarray(when, dtype=np.int64), side="right")
    positions = sorted(min(max(int(p), 1), max(1, n_valid - 1)) for p in found)
    factory = InvalidFactory(world, store, rng, first_seq=len(store) + 1_000)

    invalid_records: list[dict[str, Any]] = []
    lines = store.lines
    ts = store.ts
    line_no = 0
    k = 0
    with open_stream(out) as f:
        buf: list[bytes] = []
        for i, seq in enumerate(file_seqs, start=1):
            buf.append(lines[seq])
            line_no += 1
            while k < len(kinds) and positions[k] == i:
                buf.append(factory.make(kinds[k], ts[seq]))
                line_no += 1
                invalid_records.append({"line": line_no, "kind": kinds[k]})
                k += 1
            if len(buf) >= _CHUNK:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        last_ts = ts[file_seqs[-1]] if file_seqs else start_ms
        while k < len(kinds):
            buf.append(factory.make(kinds[k], last_ts))
            line_no += 1
            invalid_records.append({"line": line_no, "kind": kinds[k]})
            k += 1
        if buf:
            f.write(b"\n".join(buf) + b"\n")

    write_jsonl(paths.truth, truth.rows)
    write_jsonl(paths.labels, labels)
    late_ids = [store.event_id(s) for s in truth.late_seqs]
    valid_events = sum(truth.events_by_type.values())
    expected: dict[str, Any] = {
        "lines": line_no,
        "valid_lines": n_valid,
        "valid_events": valid_events,
        "duplicates": truth.duplicates,
        "invalid_lines": len(invalid_records),
        "late_events": len(late_ids),
        "counted_events": sum(truth.counted_by_type.values()),
        "late_event_ids": late_ids,
        "events_by_type": truth.events_by_type,
        "counted_by_type": truth.counted_by_type,
        "kpi_rows": len(truth.rows),
        "invalid": invalid_records,
        "incidents": len(labels),
        "unshipped_batches": supply.unshipped_batches,
        "experiment": _experiment(effects),
        "rules": {
            "allowed_lateness_ms": ALLOWED_LATENESS_MS,
            "lateness": "per file: ts < (max ts of valid lines earlier in the file) - 60 s",
            "dedup": "an event_id already seen earlier in the file is ignored (not late)",
            "window": "1-minute tumbling on event time, UTC",
            "repeat_buyers": "ordered (counted order, any region/channel) in "
            "[window_start - 90 d, window_start)",
            "duplicate_rate": DUP_RATE,
            "late_rate": LATE_RATE,
        },
        "ts_formats": list(FORMAT_NAMES),
        "start": iso_z(start_ms),
        "end": iso_z(end_ms),
        "seed": seed,
        "hours": hours,
        "scale": scale,
        "incidents_enabled": incidents,
        "incident_strength": strength,
    }
    write_json(paths.expected, expected)
    return SimulationSummary(
        lines=line_no,
        valid_events=valid_events,
        duplicates=truth.duplicates,
        invalid_lines=len(invalid_records),
        late_events=len(late_ids),
        incidents=len(labels),
        events_by_type=dict(truth.events_by_type),
        out=out,
        companions=paths,
    )

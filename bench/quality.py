"""Detection quality over several labelled simulator seeds, in-process (no ClickHouse).

Feeds the real decode, lateness, aggregation and detection steps in the order the
dataflow does (one file, one partition), then scores the final alert set against
the labels with :mod:`koxpulse.evaluate`. It is the quick loop for tuning detectors;
the integration tests check the same through ``koxpulse run`` and ClickHouse.

    python -m bench.quality --seeds 7,3,11 --hours 48 --scale 1 [--clean 5,9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from detectors.fraud import FraudParams
from koxpulse.alerts import Alert
from koxpulse.decode import decode_batch
from koxpulse.detection import Detection, DetectionParams
from koxpulse.evaluate import (
    KindScore,
    ScoredAlert,
    format_scores,
    incident_delays,
    load_labels,
    score,
)
from koxpulse.kpi import KpiAggregator
from koxpulse.lateness import PartitionClock
from koxpulse.settings import TUNING_BY_FIELD, load
from koxpulse.simulator import companion_paths, simulate
from koxpulse.sources.files import FilePartition


def replay(
    path: Path,
    *,
    params: DetectionParams | None = None,
    fraud: FraudParams | None = None,
    batch_lines: int = 5000,
) -> list[Alert]:
    """Final state of every alert raised over ``path`` (the latest row per alert id)."""
    part = FilePartition(str(path), batch_lines, None, lambda: 0)
    clock = PartitionClock(60_000)
    agg = KpiAggregator(expected_partitions={str(path)}, keep_accepted=True)
    det = Detection(params, fraud)
    final: dict[str, Alert] = {}
    while True:
        try:
            [raw] = part.next_batch()
        except StopIteration:
            break
        batch = clock.tag(decode_batch(raw))
        for a in det.process(agg.process(batch)):
            final[a.alert_id] = a
        if raw.eof:
            break
    for a in det.process(agg.flush()):
        final[a.alert_id] = a
    part.close()
    return list(final.values())


def scored(alerts: list[Alert]) -> list[ScoredAlert]:
    return [
        ScoredAlert(
            a.alert_id, a.kind, a.entity_type, a.entity_id, a.region, a.channel, a.starts_at
        )
        for a in alerts
    ]


def stream(
    cache: Path, seed: int, hours: float, scale: float, incidents: bool, strength: float = 1.0
) -> Path:
    tag = ("inc" if strength == 1 else f"inc{strength:g}") if incidents else "clean"
    out = cache / f"s{seed}-h{hours:g}-x{scale:g}-{tag}.jsonl.gz"
    if not out.exists():
        simulate(out, hours=hours, seed=seed, scale=scale, incidents=incidents, strength=strength)
    return out


def delays(alerts: list[Alert], path: Path) -> list[tuple[str, float | None]]:
    """Per incident: its kind and the delay of its first matching alert (None: missed)."""
    incidents = load_labels(companion_paths(path).labels)
    found = incident_delays(scored(alerts), incidents)
    return [(inc.kind, d) for inc, d in zip(incidents, found, strict=True)]


def _params(given: list[str]) -> tuple[DetectionParams, FraudParams]:
    """Parameter sets with ``NAME=VALUE`` overrides, parsed and checked by the same options
    as ``koxpulse run``'s flags (``NAME`` with or without its ``detect_``/``fraud_`` prefix);
    ``KOXPULSE_*`` variables are not read, so a run measures what its command line says."""
    flags: dict[str, object] = {}
    for item in given:
        name, _, value = item.partition("=")
        opt = next(
            (
                TUNING_BY_FIELD[f]
                for f in (name, "detect_" + name, "fraud_" + name)
                if f in TUNING_BY_FIELD
            ),
            None,
        )
        if opt is None:
            raise SystemExit(f"--set {item}: no such detection or fraud parameter")
        try:
            flags[opt.field] = opt.parse(value)
        except ValueError as exc:
            raise SystemExit(f"--set {item}: {exc}") from exc
    settings = load(flags, env={})
    return settings.detection_params(), settings.fraud_params()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="7,3,11")
    ap.add_argument("--clean", default="")
    ap.add_argument("--hours", type=float, default=48)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="incident strength of the labelled seeds (koxpulse simulate --incident-strength)",
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/koxpulse-quality"))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a DetectionParams or FraudParams field, e.g. outlet_max_p=1e-6 (repeatable)",
    )
    args = ap.parse_args(argv)
    params, fraud = _params(args.set)
    args.cache.mkdir(parents=True, exist_ok=True)
    all_alerts: list[ScoredAlert] = []
    all_delays: list[tuple[str, float | None]] = []
    scores: list[KindScore] = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        path = stream(args.cache, seed, args.hours, args.scale, True, args.strength)
        t0 = time.perf_counter()
        alerts = replay(path, params=params, fraud=fraud)
        d = delays(alerts, path)
        all_delays += d
        sc = score(scored(alerts), load_labels(companion_paths(path).labels))
        scores += sc
        all_alerts += scored(alerts)
        print(f"seed {seed} ({time.perf_counter() - t0:.0f} s)")
        print(format_scores(sc))
        for a in alerts:
            ok = any(
                a.kind == s.kind for s in sc if s.matched_alerts < s.alerts
            )  # a kind with an unmatched alert: show them all
            if ok:
                print(
                    f"   {a.kind} {a.entity_type}={a.entity_id} {a.region}/{a.channel}"
                    f" starts {a.starts_at} {a.summary[:100]}"
                )
    for seed in [int(s) for s in args.clean.split(",") if s]:
        path = stream(args.cache, seed, args.hours, args.scale, False)
        alerts = replay(path, params=params, fraud=fraud)
        print(f"clean seed {seed}: {len(alerts)} alerts")
        for a in alerts:
            print(
                f"   {a.kind} {a.entity_type}={a.entity_id} {a.region}/{a.channel} {a.summary[:90]}"
            )
    found = [x for _, x in all_delays if x is not None]
    total_a = sum(s.alerts for s in scores)
    total_m = sum(s.matched_alerts for s in scores)
    by_kind: dict[str, list[float]] = {}
    for k, x in all_delays:
        if x is not None:
            by_kind.setdefault(k, []).append(x / 60)
    print(
        "delays by kind (min):",
        {k: sorted(round(x, 1) for x in v) for k, v in sorted(by_kind.items())},
    )
    print(
        "median delay by kind (min):",
        {k: round(statistics.median(v), 1) for k, v in sorted(by_kind.items())},
    )
    print(
        f"ALL: incidents {len(all_delays)} found {len(found)} alerts {total_a} "
        f"matched {total_m} precision {total_m / max(total_a, 1):.3f} "
        f"median delay {statistics.median(found) / 60 if found else float('nan'):.2f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

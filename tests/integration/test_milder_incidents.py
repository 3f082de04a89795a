"""Milder incidents than the simulator's default: what is found, and that nothing else is.

``koxpulse simulate --incident-strength 0.5`` moves the 高扫码低核销 and kpi_anomaly
incidents half as far (redemptions at 54 % rather than 8 %, scans at 2.5x rather than 4x,
orders at 51 % rather than 2 %). The detection step runs in process on the decoded stream
(as ``python -m bench.quality`` does; the path through ``koxpulse run`` and ClickHouse is
covered by test_alerts_replay), so the check is of the rules, exactly.
"""

from __future__ import annotations

from pathlib import Path

from bench.quality import replay, scored
from koxpulse.evaluate import incident_delays, load_labels, matches
from koxpulse.simulator import companion_paths, simulate


def test_half_strength_incidents_found_where_the_rules_say_and_nothing_else(
    tmp_path: Path,
) -> None:
    stream = tmp_path / "half.jsonl.gz"
    simulate(stream, hours=48, seed=7, scale=1.0, incidents=True, strength=0.5)
    alerts = scored(replay(stream))
    incidents = load_labels(companion_paths(stream).labels)
    found = incident_delays(alerts, incidents)
    missed = sorted(
        (i.kind, i.entity_type) for i, d in zip(incidents, found, strict=True) if d is None
    )
    # An outlet's 高扫码低核销 needs redemptions under 40 % of expected (hundreds of outlets
    # are judged), and a fall of orders must be at least 50 % (kpi_min_change): at 54 % and
    # 51 % of usual these two are, by the rules, not worth a page. Everything else is found:
    # the region's redemptions at 54 % (under its 60 %), the scans at 2.5x, every fraud kind.
    assert missed == [("high_scan_low_redemption", "outlet"), ("kpi_anomaly", "region")]
    kpi_missed = [i for i, d in zip(incidents, found, strict=True) if d is None]
    assert [(i.region, i.channel) for i in kpi_missed if i.kind == "kpi_anomaly"] == [
        ("CN-SC", "ecommerce")  # the orders fall, not the scan surge in CN-JS/offline
    ]
    # and no alert that matches no incident
    assert all(any(matches(a, i) for i in incidents) for a in alerts), alerts

"""Alert-vs-label matching: kind, entity (or region and channel), and the time tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from koxpulse.errors import ConfigError
from koxpulse.evaluate import (
    Incident,
    ScoredAlert,
    format_overall_delay,
    format_scores,
    incident_delays,
    load_labels,
    score,
)

M = 60_000


def inc(
    kind: str,
    etype: str,
    eid: str,
    start: int,
    end: int,
    region: str = "CN-SD",
    channel: str = "offline",
) -> Incident:
    return Incident("i", kind, etype, eid, region, channel, start, end)


def alert(
    kind: str, etype: str, eid: str, at: int, region: str = "CN-SD", channel: str = "offline"
) -> ScoredAlert:
    return ScoredAlert("a", kind, etype, eid, region, channel, at)


def test_matching_window_entity_and_delays() -> None:
    incidents = [
        inc("duplicate_code", "code", "C1", 100 * M, 160 * M),
        inc("duplicate_code", "code", "C2", 300 * M, 310 * M),
        inc("kpi_anomaly", "region", "CN-SD", 500 * M, 530 * M),
    ]
    alerts = [
        alert("duplicate_code", "code", "C1", 96 * M),  # 4 min early: counts, delay 0
        alert("duplicate_code", "code", "C1", 150 * M),  # same incident again
        alert("duplicate_code", "code", "C2", 326 * M),  # 16 min after the end: too late
        alert("duplicate_code", "code", "C9", 101 * M),  # wrong entity
        alert("kpi_anomaly", "region", "CN-SD", 507 * M),  # region-level: region + channel
        alert("kpi_anomaly", "region", "CN-SD", 507 * M, channel="ecommerce"),
    ]
    got = {s.kind: s for s in score(alerts, incidents)}
    dup = got["duplicate_code"]
    assert (dup.incidents, dup.detected, dup.alerts, dup.matched_alerts) == (2, 1, 4, 2)
    assert dup.precision == 0.5 and dup.recall == 0.5
    assert dup.median_delay_s == 0.0
    kpi = got["kpi_anomaly"]
    assert (kpi.detected, kpi.matched_alerts, kpi.alerts) == (1, 1, 2)
    assert kpi.median_delay_s == 7 * 60 and kpi.worst_delay_s == 7 * 60
    text = format_scores(list(got.values()))
    assert "duplicate_code" in text and "all kinds" in text
    delays = incident_delays(alerts, incidents)
    assert delays == [0.0, None, 7 * 60.0]
    assert format_overall_delay(delays) == (
        "over all 3 incidents: 2 found, median delay 3.5 min, worst 7.0 min\n"
    )
    assert format_overall_delay([None]) == "no incident found\n"


def test_labels_file_round_trip_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_text(
        '{"incident_id":"x","kind":"impossible_travel","entity_type":"user",'
        '"entity_id":"U1","region":"","channel":"","start":"2026-11-16T01:00:00Z",'
        '"end":"2026-11-16T01:20:00Z"}\n\n'
    )
    (i,) = load_labels(p)
    assert i.start == 1_794_790_800_000 and i.end - i.start == 20 * M
    p.write_text('{"kind":"x","start":"2026-11-16T01:00:00"}\n')
    with pytest.raises(ConfigError, match="line 1"):
        load_labels(p)

"""Detectors end to end: a labelled replay raises the right alerts, a clean one raises none.

Every labelled incident of every kind is found with precision of at least 0.9
(issue 4); the incident-free stream must stay silent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from koxpulse.evaluate import ScoredAlert, load_labels, score
from koxpulse.simulator import companion_paths, simulate
from tests.conftest import run_cli

ALERT_SQL = (
    "SELECT alert_id, kind, severity, status, region, channel, entity_type, entity_id, "
    "toUnixTimestamp64Milli(starts_at) AS starts_ms, toUnixTimestamp64Milli(ends_at) AS ends_ms, "
    "summary, details FROM koxpulse.alerts FINAL ORDER BY alert_id"
)


def replay_alerts(stream: Path, dsn: str, *extra: str) -> list[dict]:
    proc = run_cli("run", "--input", str(stream), "--clickhouse", dsn, *extra)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("query", "--clickhouse", dsn, "--format", "json", ALERT_SQL)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("alerts")
    labelled = d / "labelled.jsonl.gz"
    clean = d / "clean.jsonl.gz"
    simulate(labelled, hours=40, seed=3, scale=0.3, incidents=True)
    simulate(clean, hours=40, seed=5, scale=0.3, incidents=False)
    return {"labelled": labelled, "clean": clean, "dir": d}


def test_an_incident_free_stream_raises_no_alert(streams) -> None:
    alerts = replay_alerts(streams["clean"], f"chdb://{streams['dir'] / 'ch-clean'}")
    assert alerts == []


def scored_rows(alerts: list[dict]) -> list[ScoredAlert]:
    return [
        ScoredAlert(
            a["alert_id"],
            a["kind"],
            a["entity_type"],
            a["entity_id"],
            a["region"],
            a["channel"],
            a["starts_ms"],
        )
        for a in alerts
    ]


def test_labelled_incidents_are_found_with_clean_alert_rows(streams) -> None:
    dsn = f"chdb://{streams['dir'] / 'ch-labelled'}"
    alerts = replay_alerts(streams["labelled"], dsn)
    incidents = load_labels(companion_paths(streams["labelled"]).labels)
    scores = {s.kind: s for s in score(scored_rows(alerts), incidents)}
    for kind in (
        "duplicate_code",
        "reward_farming",
        "cross_region_scan",
        "outlet_self_redemption",
        "impossible_travel",
        "high_scan_low_redemption",
        "kpi_anomaly",
    ):
        assert scores[kind].detected == scores[kind].incidents, (kind, scores[kind])
    total_alerts = sum(s.alerts for s in scores.values())
    matched = sum(s.matched_alerts for s in scores.values())
    assert matched / total_alerts >= 0.9
    for a in alerts:
        assert a["severity"] in ("critical", "warning", "info")
        assert a["status"] in ("firing", "resolved")
        assert (a["ends_ms"] is None) == (a["status"] == "firing")
        assert a["summary"] and any(ch.isdigit() for ch in a["summary"])
        assert json.loads(a["details"])
    # replaying again gives the same incidents under the same ids
    again = replay_alerts(streams["labelled"], dsn)
    assert [x["alert_id"] for x in again] == [x["alert_id"] for x in alerts]


@pytest.mark.parametrize("seed", [7, 11])
def test_more_seeds_every_incident_found_early(seed: int, tmp_path: Path) -> None:
    """Full-scale labelled streams of other seeds: every incident found, precision >= 0.9,
    and the median delay over all incidents no worse than measured (6.2 and 5.0 minutes on
    these 40-hour streams on 2026-12-07, 9 and 7.5 before the early looks of 高扫码低核销 and
    of falling counts; issue 4 aims at 3; `python -m bench.quality` gives the figures per
    kind)."""
    import statistics

    from koxpulse.evaluate import incident_delays, matches

    stream = tmp_path / f"seed{seed}.jsonl.gz"
    simulate(stream, hours=40, seed=seed, scale=1.0, incidents=True)
    alerts = scored_rows(replay_alerts(stream, f"chdb://{tmp_path / 'ch'}"))
    incidents = load_labels(companion_paths(stream).labels)
    assert len(incidents) == 10
    found = incident_delays(alerts, incidents)
    assert None not in found, list(zip(incidents, found, strict=True))
    delays = [d / 60 for d in found if d is not None]
    matched = sum(1 for a in alerts if any(matches(a, i) for i in incidents))
    assert matched / len(alerts) >= 0.9, alerts
    assert statistics.median(delays) <= 7.0, sorted(delays)


def test_summaries_in_simplified_chinese(streams) -> None:
    alerts = replay_alerts(
        streams["labelled"], f"chdb://{streams['dir'] / 'ch-zh'}", "--lang", "zh-CN"
    )
    assert alerts
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in a["summary"]) for a in alerts)


def split_like_kafka(src: Path, whole: Path, parts: list[Path]) -> None:
    """Spread lines over files the way ``koxpulse produce`` spreads them over partitions
    (by event id), dropping the deliberately late events: lateness is judged per partition.
    ``whole`` gets the same lines in their original order."""
    import gzip
    import zlib

    late = set(json.loads(companion_paths(src).expected.read_text())["late_event_ids"])
    outs = [p.open("wb") for p in parts]
    everything = whole.open("wb")
    try:
        with gzip.open(src, "rb") as f:
            for line in f:
                try:
                    eid = json.loads(line).get("event_id")
                except (ValueError, AttributeError):
                    eid = None
                if eid in late:
                    continue
                key = str(eid).encode()
                outs[zlib.crc32(key) % len(outs)].write(line)
                everything.write(line)
    finally:
        for o in [*outs, everything]:
            o.close()


def test_alerts_do_not_depend_on_partitioning_or_batching(streams) -> None:
    d: Path = streams["dir"]
    parts = [d / f"part-{i}.jsonl" for i in range(3)]
    whole = d / "whole.jsonl"
    split_like_kafka(streams["labelled"], whole, parts)
    one = replay_alerts(whole, f"chdb://{d / 'ch-whole'}")
    args = [a for p in parts[1:] for a in ("--input", str(p))]
    three = replay_alerts(parts[0], f"chdb://{d / 'ch-parts'}", *args, "--batch-lines", "97")
    assert len(one) >= 8
    assert three == one

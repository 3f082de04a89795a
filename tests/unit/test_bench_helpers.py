"""The benchmark harness's own helpers: the synthetic streams are valid, the figures add up."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from bench.latency import percentile, summary
from bench.live import KINDS, Background, incident
from bench.memory import write_stream
from bench.profile import summarise_speedscope
from bench.report import targets
from detectors.fraud import FraudDetectors
from koxpulse.events import Scan, Shipment, decode_event


def test_percentile_interpolates_like_numpy() -> None:
    xs = [3.0, 1.0, 2.0, 4.0]
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
    assert percentile([], 50) is None
    assert summary([1.0])["p99_s"] == 1.0


def test_memory_stream_is_valid_distinct_and_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    n = write_stream(path, 5000)
    lines = path.read_bytes().splitlines()
    assert len(lines) == n
    events = [decode_event(line) for line in lines]  # raises on anything invalid
    ids = [e.event_id for e, _ in events]
    assert len(set(ids)) == len(ids)
    scans = [e for e, _ in events if isinstance(e, Scan)]
    assert len({s.user_id for s in scans}) == 5000
    assert len({s.code_id for s in scans}) == 5000
    times = [t for _, t in events]
    assert times == sorted(times)
    # every batch is shipped before its codes are scanned, to the region they are scanned in
    shipped = {e.batch_id: e.region for e, _ in events if isinstance(e, Shipment)}
    assert all(shipped[s.batch_id] == s.region for s in scans if s.batch_id)


def test_live_background_is_valid_and_trips_no_fraud_detector() -> None:
    bg = Background(seed=3)
    fraud = FraudDetectors()
    alerts = []
    for i in range(20_000):
        _topic, _key, value = bg.next(1_800_000_000_000 + i * 5)
        ev, t = decode_event(value)
        alerts += fraud.update(ev, t)
    assert alerts == []


@pytest.mark.parametrize("kind", KINDS)
def test_each_live_incident_fires_its_detector(kind: str) -> None:
    inc = incident(kind, 0, 0.0)
    fraud = FraudDetectors()
    kinds = set()
    t0 = 1_800_000_000_000
    for k, (offset, ev) in enumerate(inc.steps):
        doc = {"event_id": f"x{k}", "ts": t0 + int(offset * 1000), **ev}
        e, t = decode_event(orjson.dumps(doc))
        kinds |= {o.kind for o in fraud.update(e, t) if o.entity_id == inc.entity_id}
    assert kind in kinds


def test_speedscope_summary_separates_startup_and_areas(tmp_path: Path) -> None:
    frames = [
        {"name": "<module>", "file": "/x/koxpulse/cli.py"},
        {"name": "_find_and_load", "file": "<frozen importlib._bootstrap>"},
        {"name": "replay", "file": "/x/koxpulse/runner.py"},
        {"name": "decode_batch", "file": "/x/koxpulse/decode.py"},
        {"name": "on_scan", "file": "/x/detectors/duplicate_code.py"},
    ]
    doc = {
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": "main",
                "samples": [[0, 1], [0, 2], [0, 2, 3], [0, 2, 4], [0, 2, 4]],
                "weights": [1.0, 1.0, 1.0, 1.0, 1.0],
            }
        ],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    main = summarise_speedscope(path)["main"]
    assert main["startup_seconds"] == 1.0
    assert main["seconds"] == 4.0
    assert main["areas"]["detectors (fraud and KPI)"] == 0.5
    assert main["areas"]["decode and validate (msgspec, timestamps)"] == 0.25
    assert main["areas"]["Bytewax engine (Rust, between steps)"] == 0.25


def test_targets_say_which_hold() -> None:
    doc = {
        "kafka": {
            "bare_events_per_s": 200_000,
            "koxpulse_1p_detectors_on": {"events_per_s": 140_000, "ratio_vs_bare": 0.7},
            "koxpulse_2p_detectors_on": {"events_per_s": 210_000, "ratio_vs_bare": 1.05},
            "two_vs_one_process_detectors_on": 1.5,
            "quix": {"status": "failed", "why": "no broker"},
        },
        "memory": [{"distinct_users": 1_000_000, "events": 1, "peak_rss_mib": 900.0}],
    }
    got = {t["target"]: t["holds"] for t in targets(doc)}
    assert got["Kafka, 1 process, detectors on: koxpulse ÷ bare consume loop"] is True
    assert got["Kafka, detectors on: 2 processes ÷ 1 process"] is False
    assert got["koxpulse ÷ Quix Streams"] is None
    assert got["peak RSS at 1M distinct users (file replay, detectors on)"] is True

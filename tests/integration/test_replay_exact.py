"""End to end: simulate → ``koxpulse run`` → ClickHouse (chDB) equals the independent truth.

Each test runs the real CLI in a subprocess with its own chDB directory (chDB
allows one directory per process) and reads back with ``koxpulse query``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from koxpulse.kpi import KPI_COLUMNS
from koxpulse.simulator import companion_paths, simulate
from tests.conftest import run_cli

# invalid kind written by the simulator -> (reason code, start of the reason)
REASONS: dict[str, tuple[str, str]] = {
    "not_json": ("not_json", "message is not valid JSON"),
    "truncated_json": ("not_json", "message is not valid JSON"),
    "not_object:array": ("not_object", "message is a JSON array, not an object"),
    "not_object:number": ("not_object", "message is a JSON number, not an object"),
    "invalid_utf8": ("invalid_utf8", "message is not valid UTF-8"),
    "empty_line": ("empty", "message is empty"),
    "missing_type": ("missing_field", "message is missing required field type"),
    "unknown_type": ("unknown_type", "unknown event type"),
    "ts_no_offset": ("ts_no_offset", "ts "),
    "ts_garbage": ("ts_invalid", "ts "),
    "ts_numeric_string": ("ts_invalid", "ts "),
    "oversized": ("oversized", "message is larger than 64 KiB"),
}


def expected_reason(kind: str) -> tuple[str, str]:
    if kind in REASONS:
        return REASONS[kind]
    cat, _, subject = kind.partition(":")
    etype, _, field = subject.rpartition(".")
    prefix = f"{etype} " if etype else ""
    if cat == "missing_field":
        return "missing_field", f"{prefix}is missing required field {field}"
    if cat == "wrong_type":
        return "wrong_type", f"{prefix}field {field} must be"
    if cat in ("out_of_range", "too_long"):
        return "out_of_range", f"{prefix}field {field} must be"
    raise AssertionError(f"unknown invalid kind {kind}")


def query(dsn: str, sql: str) -> list[dict[str, Any]]:
    proc = run_cli("query", "--clickhouse", dsn, "--format", "json", sql)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def replay(inputs: list[Path], dsn: str, *extra: str) -> None:
    args = [a for p in inputs for a in ("--input", str(p))]
    proc = run_cli("run", *args, "--clickhouse", dsn, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


KPI_SQL = (
    "SELECT formatDateTime(window_start, '%Y-%m-%dT%H:%i:%S.000Z') AS window_start, region, "
    "channel, scans, unique_codes, scanners, redemptions, orders, revenue, buyers, "
    "repeat_buyers, redemption_rate, repurchase_rate FROM koxpulse.kpi_minute FINAL "
    "ORDER BY window_start, region, channel"
)


def assert_kpis_equal(got: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    assert len(got) == len(truth)
    for g, t in zip(got, truth, strict=True):
        for col, want in t.items():
            have = g[col]
            if isinstance(want, float) or isinstance(have, float):
                assert want is not None and have is not None, (col, g, t)
                assert math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-6), (col, g, t)
            else:
                assert have == want, (col, g, t)


@pytest.fixture(
    scope="module",
    params=[(1, ".jsonl"), (2, ".jsonl.gz"), (3, ".jsonl")],
    ids=["seed1", "seed2-gzip", "seed3"],
)
def replayed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    seed, suffix = request.param
    d = tmp_path_factory.mktemp(f"replay-{seed}")
    stream = d / f"stream{suffix}"
    simulate(stream, hours=6, seed=seed, scale=0.05, incidents=True)
    dsn = f"chdb://{d / 'ch'}"
    replay([stream], dsn, "--metrics-textfile", str(d / "metrics.prom"))
    return stream, dsn, d


def test_kpis_equal_the_independent_ground_truth(replayed) -> None:
    stream, dsn, _ = replayed
    truth = [json.loads(line) for line in companion_paths(stream).truth.read_text().splitlines()]
    assert truth, "the simulator wrote no truth rows"
    assert_kpis_equal(query(dsn, KPI_SQL), truth)


EVENTS_PER_MINUTE_SQL = (
    "SELECT formatDateTime(toStartOfMinute(ts), '%Y-%m-%dT%H:%i:%S.000Z') AS window_start, "
    "region, channel, countIf(type = 'scan') AS scans, "
    "uniqExactIf(code_id, type = 'scan') AS unique_codes, "
    "uniqExactIf(user_id, type = 'scan') AS scanners, "
    "countIf(type = 'redemption') AS redemptions, countIf(type = 'order') AS orders, "
    "toFloat64(ifNull(sumIf(amount, type = 'order'), 0)) AS revenue, uniqExactIf(user_id, type = 'order') AS buyers "
    "FROM koxpulse.events FINAL WHERE type != 'shipment' "
    "GROUP BY window_start, region, channel ORDER BY window_start, region, channel"
)


def test_the_events_table_holds_exactly_the_counted_events(replayed) -> None:
    stream, dsn, _ = replayed
    truth = [json.loads(line) for line in companion_paths(stream).truth.read_text().splitlines()]
    fields = KPI_COLUMNS[: KPI_COLUMNS.index("buyers") + 1]  # what events alone can tell
    # minutes with only shipments have a kpi row of zeros and no row here
    busy = [
        {k: t[k] for k in fields} for t in truth if t["scans"] or t["redemptions"] or t["orders"]
    ]
    assert_kpis_equal(query(dsn, EVENTS_PER_MINUTE_SQL), busy)
    ids = query(dsn, "SELECT count() AS n, uniqExact(event_id) AS u FROM koxpulse.events FINAL")
    assert ids[0]["n"] == ids[0]["u"]
    late = query(
        dsn,
        "SELECT count() AS n FROM koxpulse.events FINAL WHERE event_id IN "
        "(SELECT event_id FROM koxpulse.late_events)",
    )
    assert late[0]["n"] == 0


def test_every_invalid_line_gives_exactly_one_dead_letter_with_its_reason(replayed) -> None:
    stream, dsn, _ = replayed
    expected = json.loads(companion_paths(stream).expected.read_text())
    rows = query(
        dsn,
        "SELECT source, position, reason_code, reason FROM koxpulse.dead_letters "
        "FINAL ORDER BY toUInt64(position)",
    )
    assert [int(r["position"]) for r in rows] == [i["line"] for i in expected["invalid"]]
    assert {r["source"] for r in rows} == {str(stream)}
    for row, inv in zip(rows, expected["invalid"], strict=True):
        code, start = expected_reason(inv["kind"])
        assert row["reason_code"] == code, (inv, row)
        assert start in row["reason"], (inv, row)
    kinds = {i["kind"] for i in expected["invalid"]}
    assert {"empty_line", "oversized", "invalid_utf8", "ts_no_offset"} <= kinds


def test_late_events_and_duplicates_are_accounted(replayed) -> None:
    stream, dsn, d = replayed
    expected = json.loads(companion_paths(stream).expected.read_text())
    late = query(dsn, "SELECT event_id FROM koxpulse.late_events FINAL ORDER BY event_id")
    assert sorted(r["event_id"] for r in late) == sorted(expected["late_event_ids"])
    assert expected["late_event_ids"], "the stream should contain late events"
    metrics = (d / "metrics.prom").read_text()
    sample = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    duplicates = {k: v for k, v in sample.items() if 'outcome="duplicate"' in k}
    assert sum(duplicates.values()) == expected["duplicates"]
    assert {k.split('type="')[1].split('"')[0] for k in duplicates} <= {
        "scan",
        "redemption",
        "order",
        "shipment",
    }
    assert sample["koxpulse_late_events_total"] == len(expected["late_event_ids"])
    assert sum(v for k, v in sample.items() if k.startswith("koxpulse_dead_letters_total{")) == len(
        expected["invalid"]
    )
    assert sample['koxpulse_messages_read_total{source="file"}'] == expected["lines"]


def test_replaying_the_same_file_again_changes_nothing_under_final(replayed) -> None:
    stream, dsn, _ = replayed
    before = (
        query(dsn, KPI_SQL),
        query(dsn, "SELECT count() AS n FROM koxpulse.dead_letters FINAL"),
        query(dsn, "SELECT count() AS n FROM koxpulse.late_events FINAL"),
        query(dsn, "SELECT count() AS n FROM koxpulse.events FINAL"),
    )
    replay([stream], dsn)
    after = (
        query(dsn, KPI_SQL),
        query(dsn, "SELECT count() AS n FROM koxpulse.dead_letters FINAL"),
        query(dsn, "SELECT count() AS n FROM koxpulse.late_events FINAL"),
        query(dsn, "SELECT count() AS n FROM koxpulse.events FINAL"),
    )
    assert after == before
    raw = query(dsn, "SELECT count() AS n FROM koxpulse.kpi_minute")
    assert raw[0]["n"] >= before[0].__len__()  # both copies may still be stored unmerged

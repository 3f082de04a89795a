"""The simulator and its ground truth, checked against an independent stdlib reading of
the file it wrote (the truth module itself never reads the file back)."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from koxpulse.simulator import DEFAULT_START, companion_paths, simulate
from koxpulse.simulator.delivery import plan_delivery
from koxpulse.simulator.events import EventStore
from koxpulse.simulator.incidents import plan_incidents
from koxpulse.simulator.invalid import KINDS
from koxpulse.simulator.timefmt import datetime_to_ms
from koxpulse.simulator.traffic import Clock, generate_background
from koxpulse.simulator.truth import compute_truth, compute_truth_reference
from koxpulse.simulator.world import World

ALERT_KINDS = {
    "high_scan_low_redemption",
    "kpi_anomaly",
    "duplicate_code",
    "reward_farming",
    "cross_region_scan",
    "outlet_self_redemption",
    "impossible_travel",
}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
REQUIRED = {
    "scan": ("code_id", "user_id"),
    "redemption": ("code_id", "user_id"),
    "order": ("order_id", "user_id", "amount"),
    "shipment": ("batch_id", "codes"),
}


# -- an independent reading of the contract ------------------------------------------------


def _ts_ms(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("bool ts")
    if isinstance(v, int):
        return v
    if not isinstance(v, str) or not RFC3339.match(v):
        raise ValueError(f"bad ts {v!r}")
    dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    assert delta.microseconds % 1000 == 0, "timestamps are exact to the millisecond"
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _str_ok(v: Any, hi: int) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= hi


def validate(raw: bytes) -> tuple[dict[str, Any], int]:
    """Raises on anything the contract calls invalid; returns (event, ts in ms)."""
    if len(raw) > 64 * 1024:
        raise ValueError("oversized")
    d = json.loads(raw.decode("utf-8"))
    if not isinstance(d, dict):
        raise ValueError("not an object")
    if not _str_ok(d.get("event_id"), 128) or d.get("type") not in REQUIRED:
        raise ValueError("event_id/type")
    ts = _ts_ms(d.get("ts"))
    if not _str_ok(d.get("region"), 64) or not _str_ok(d.get("channel"), 64):
        raise ValueError("region/channel")
    for k in REQUIRED[d["type"]]:
        if k not in d:
            raise ValueError(f"missing {k}")
    for k in ("code_id", "user_id", "order_id", "batch_id"):
        if k in d and not isinstance(d[k], str):
            raise ValueError(k)
    if "amount" in d and not (_is_num(d["amount"]) and d["amount"] >= 0):
        raise ValueError("amount")
    for k in ("quantity", "codes"):
        if k in d and not _is_count(d[k]):
            raise ValueError(k)
    if "lat" in d and not (_is_num(d["lat"]) and -90 <= d["lat"] <= 90):
        raise ValueError("lat")
    if "lon" in d and not (_is_num(d["lon"]) and -180 <= d["lon"] <= 180):
        raise ValueError("lon")
    return d, ts


@dataclass
class Run:
    out: Path
    lines: list[bytes]
    expected: dict[str, Any]
    truth: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    valid: list[tuple[int, dict[str, Any], int]]  # (line number, event, ts) in file order
    invalid_lines: list[int]


def _read(out: Path) -> Run:
    data = gzip.decompress(out.read_bytes()) if out.name.endswith(".gz") else out.read_bytes()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    cp = companion_paths(out)
    valid, invalid = [], []
    for no, raw in enumerate(lines, 1):
        try:
            d, ts = validate(raw)
        except (ValueError, UnicodeDecodeError):
            invalid.append(no)
            continue
        valid.append((no, d, ts))
    return Run(
        out=out,
        lines=lines,
        expected=json.loads(cp.expected.read_text()),
        truth=[json.loads(x) for x in cp.truth.read_text().splitlines()],
        labels=[json.loads(x) for x in cp.labels.read_text().splitlines()],
        valid=valid,
        invalid_lines=invalid,
    )


def _recompute(run: Run) -> tuple[list[dict[str, Any]], list[str], int]:
    newest = -(10**18)
    seen: set[str] = set()
    late: list[str] = []
    dups = 0
    agg: dict[tuple[int, str, str], list[Any]] = defaultdict(
        lambda: [0, set(), set(), 0, 0, 0.0, set()]
    )
    orders: dict[str, list[int]] = defaultdict(list)
    for _, d, ts in run.valid:
        if d["event_id"] in seen:
            dups += 1
        else:
            seen.add(d["event_id"])
            if ts < newest - 60_000:
                late.append(d["event_id"])
            else:
                a = agg[(ts - ts % 60_000, d["region"], d["channel"])]
                if d["type"] == "scan":
                    a[0] += 1
                    a[1].add(d["code_id"])
                    a[2].add(d["user_id"])
                elif d["type"] == "redemption":
                    a[3] += 1
                elif d["type"] == "order":
                    a[4] += 1
                    a[5] += d["amount"]
                    a[6].add(d["user_id"])
                    orders[d["user_id"]].append(ts)
        newest = max(newest, ts)
    rows = []
    for ws, region, channel in sorted(agg):
        scans, codes, scanners, reds, n_orders, revenue, buyers = agg[(ws, region, channel)]
        lookback = ws - 90 * 86_400_000
        repeat = sum(1 for u in buyers if any(lookback <= t < ws for t in orders[u]))
        rows.append(
            {
                "window_start": datetime.fromtimestamp(ws / 1000, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                ),
                "region": region,
                "channel": channel,
                "scans": scans,
                "unique_codes": len(codes),
                "scanners": len(scanners),
                "redemptions": reds,
                "orders": n_orders,
                "revenue": revenue,
                "buyers": len(buyers),
                "repeat_buyers": repeat,
            }
        )
    return rows, late, dups


@pytest.fixture(scope="module")
def incident_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("inc") / "run.jsonl.gz"
    simulate(out, hours=30, seed=5, scale=0.05, incidents=True)
    return _read(out)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("clean") / "run.jsonl"
    simulate(out, hours=26, seed=6, scale=0.05)
    return _read(out)


# -- reproducibility ---------------------------------------------------------------------------


def _files(out: Path) -> list[bytes]:
    cp = companion_paths(out)
    return [p.read_bytes() for p in (out, cp.truth, cp.labels, cp.expected)]


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, name: str) -> None:
    kw: dict[str, Any] = {"hours": 2, "scale": 0.02, "incidents": True}
    simulate(tmp_path / "one" / name, seed=42, **kw)
    simulate(tmp_path / "two" / name, seed=42, **kw)
    simulate(tmp_path / "three" / name, seed=43, **kw)
    first = _files(tmp_path / "one" / name)
    assert first == _files(tmp_path / "two" / name)
    other = _files(tmp_path / "three" / name)
    assert first[0] != other[0]
    assert first[1] != other[1]


def test_gzip_holds_the_same_lines_as_plain(tmp_path: Path) -> None:
    simulate(tmp_path / "p.jsonl", hours=1, seed=9, scale=0.02)
    simulate(tmp_path / "g.jsonl.gz", hours=1, seed=9, scale=0.02)
    plain = (tmp_path / "p.jsonl").read_bytes()
    assert gzip.decompress((tmp_path / "g.jsonl.gz").read_bytes()) == plain
    assert (tmp_path / "p.truth.jsonl").read_bytes() == (tmp_path / "g.truth.jsonl").read_bytes()


def test_companion_paths() -> None:
    for name in ("x/run.jsonl", "x/run.jsonl.gz"):
        cp = companion_paths(Path(name))
        assert cp.truth == Path("x/run.truth.jsonl")
        assert cp.labels == Path("x/run.labels.jsonl")
        assert cp.expected == Path("x/run.expected.json")
    with pytest.raises(ValueError):
        companion_paths(Path("x/run.json"))


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        simulate(tmp_path / "a.jsonl", hours=0, seed=1)
    with pytest.raises(ValueError):
        simulate(tmp_path / "a.jsonl", hours=1, seed=1, scale=-1)
    with pytest.raises(ValueError):
        simulate(tmp_path / "a.jsonl", hours=1, seed=1, start=datetime(2026, 11, 16))
    assert DEFAULT_START.utcoffset() is not None
    assert DEFAULT_START.weekday() == 0
    for strength in (0, -0.5, 1.5, math.nan):
        with pytest.raises(ValueError, match="strength"):
            simulate(tmp_path / "a.jsonl", hours=1, seed=1, incidents=True, strength=strength)


def test_incident_strength_scales_the_level_incidents_and_their_labels_only() -> None:
    start = datetime_to_ms(DEFAULT_START)
    clock = Clock(start, start + 30 * 3_600_000)
    full = plan_incidents(World(5, 0.05), clock, 5)
    half = plan_incidents(World(5, 0.05), clock, 5, 0.5)
    factors = lambda plan: {  # noqa: E731
        name: [w.factor for w in getattr(plan.modifiers, name)]
        for name in ("redemption_keep", "scan_factor", "order_factor")
    }
    assert factors(full) == {
        "redemption_keep": [0.08, 0.08],
        "scan_factor": [1.15, 4.0],
        "order_factor": [0.02],
    }
    # half of each change: 1 - 0.5 x 0.92, 1 + 0.5 x 0.15, 1 + 0.5 x 3, 1 - 0.5 x 0.98
    assert factors(half) == {
        "redemption_keep": [0.54, 0.54],
        "scan_factor": [1.075, 2.5],
        "order_factor": [0.51],
    }
    texts = {(lb.kind, lb.entity_type): lb.description for lb in half.labels}
    assert "redemptions fall to ~54% of normal" in texts[("high_scan_low_redemption", "region")]
    assert "redemptions at ~54% of normal" in texts[("high_scan_low_redemption", "outlet")]
    assert [lb.description for lb in full.labels if lb.kind == "kpi_anomaly"] == [
        lb.description.replace("2.5x", "4x").replace("~51%", "~2%")
        for lb in half.labels
        if lb.kind == "kpi_anomaly"
    ]
    # same windows, same entities: only the size of the change differs
    assert [(lb.kind, lb.entity_id, lb.start, lb.end) for lb in full.labels] == [
        (lb.kind, lb.entity_id, lb.start, lb.end) for lb in half.labels
    ]


# -- invalid lines -------------------------------------------------------------------------------


def test_every_invalid_kind_in_a_two_hour_run(tmp_path: Path) -> None:
    out = tmp_path / "two.jsonl"
    summary = simulate(out, hours=2, seed=3, scale=0.02)
    run = _read(out)
    kinds = [x["kind"] for x in run.expected["invalid"]]
    assert set(kinds) == set(KINDS)
    assert summary.invalid_lines == len(kinds)
    # exactly the listed lines fail an independent reading of the contract
    assert [x["line"] for x in run.expected["invalid"]] == run.invalid_lines
    by_kind = {x["kind"]: run.lines[x["line"] - 1] for x in run.expected["invalid"]}
    assert by_kind["empty_line"] == b""
    assert len(by_kind["oversized"]) > 64 * 1024
    with pytest.raises(UnicodeDecodeError):
        by_kind["invalid_utf8"].decode("utf-8")
    assert json.loads(by_kind["not_object:array"])[0]["type"] in REQUIRED
    assert json.loads(by_kind["wrong_type:order.quantity"])["quantity"] is True
    assert len(json.loads(by_kind["too_long:event_id"])["event_id"]) == 129
    assert "+" not in json.loads(by_kind["ts_no_offset"])["ts"][10:]
    assert run.lines[-1] != b""
    # an invalid line's event_id is never a valid event's
    valid_ids = {d["event_id"] for _, d, _ in run.valid}
    for x in run.expected["invalid"]:
        try:
            d = json.loads(run.lines[x["line"] - 1])
        except ValueError:
            continue
        if isinstance(d, dict):
            assert d.get("event_id") not in valid_ids


# -- ground truth ------------------------------------------------------------------------------


def test_truth_matches_an_independent_reparse(incident_run: Run) -> None:
    rows, late, dups = _recompute(incident_run)
    assert incident_run.expected["late_event_ids"] == late
    assert incident_run.expected["duplicates"] == dups
    assert incident_run.expected["lines"] == len(incident_run.lines)
    assert len(rows) == len(incident_run.truth)
    for mine, theirs in zip(rows, incident_run.truth, strict=True):
        revenue = mine.pop("revenue")
        assert math.isclose(revenue, theirs["revenue"], rel_tol=1e-9, abs_tol=1e-6)
        assert mine == {k: theirs[k] for k in mine}


def test_truth_is_self_consistent(incident_run: Run) -> None:
    columns = [
        "window_start",
        "region",
        "channel",
        "scans",
        "unique_codes",
        "scanners",
        "redemptions",
        "orders",
        "revenue",
        "buyers",
        "repeat_buyers",
        "redemption_rate",
        "repurchase_rate",
    ]
    keys = [(r["window_start"], r["region"], r["channel"]) for r in incident_run.truth]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert sum(r["repeat_buyers"] for r in incident_run.truth) > 0
    assert any(r["scans"] == 0 and r["orders"] == 0 for r in incident_run.truth)  # shipments
    for r in incident_run.truth:
        assert list(r) == columns
        assert r["window_start"].endswith(":00.000Z")
        assert r["unique_codes"] <= r["scans"] and r["scanners"] <= r["scans"]
        assert r["repeat_buyers"] <= r["buyers"] <= r["orders"]
        assert isinstance(r["revenue"], float)
        if r["scans"]:
            assert r["redemption_rate"] == r["redemptions"] / r["scans"]
        else:
            assert r["redemption_rate"] is None
        if r["buyers"]:
            assert r["repurchase_rate"] == r["repeat_buyers"] / r["buyers"]
        else:
            assert r["repurchase_rate"] is None


def test_vectorised_truth_equals_the_plain_loop() -> None:
    start = datetime_to_ms(DEFAULT_START)
    clock = Clock(start, start + 20 * 3_600_000)
    world = World(8, 0.03)
    store = EventStore(8)
    generate_background(world, store, clock, plan_incidents(world, clock, 8).modifiers, 8)
    seqs = plan_delivery(store, clock.start_ms, clock.end_ms, 8).file_seqs
    assert compute_truth(store, seqs) == compute_truth_reference(store, seqs)


def test_summary_agrees_with_expected(incident_run: Run) -> None:
    e = incident_run.expected
    assert e["lines"] == e["valid_events"] + e["duplicates"] + e["invalid_lines"]
    assert e["valid_lines"] == e["valid_events"] + e["duplicates"]
    assert e["counted_events"] == e["valid_events"] - e["late_events"]
    assert sum(e["events_by_type"].values()) == e["valid_events"]
    assert e["seed"] == 5 and e["hours"] == 30 and e["scale"] == 0.05
    exp = e["experiment"]
    assert [c["campaign_id"] for c in exp["campaigns"]]
    assert all(c["true_effect"]["treatment_minus_control"] > 0 for c in exp["campaigns"])


# -- delivery: duplicates, lateness, formats -----------------------------------------------------


def test_duplicates_about_one_percent_and_within_fifteen_minutes(incident_run: Run) -> None:
    e = incident_run.expected
    assert e["valid_events"] > 10_000
    assert 0.008 <= e["duplicates"] / e["valid_events"] <= 0.012
    first: dict[str, bytes] = {}
    newest = -(10**18)
    for no, d, ts in incident_run.valid:
        raw = incident_run.lines[no - 1]
        if d["event_id"] in first:
            assert raw == first[d["event_id"]]  # same content, byte for byte
            assert newest - ts <= 15 * 60_000
        else:
            first[d["event_id"]] = raw
        newest = max(newest, ts)


def test_late_events_are_few_and_three_to_thirty_minutes_behind(incident_run: Run) -> None:
    late = set(incident_run.expected["late_event_ids"])
    assert len(late) >= 3
    newest = -(10**18)
    seen: set[str] = set()
    for _, d, ts in incident_run.valid:
        if d["event_id"] in late and d["event_id"] not in seen:
            assert 3 * 60_000 <= newest - ts <= 30 * 60_000
        elif d["event_id"] not in seen:
            assert newest - ts <= 20_000  # ordinary disorder stays far inside 60 s
        seen.add(d["event_id"])
        newest = max(newest, ts)


def test_timestamps_in_every_format(incident_run: Run) -> None:
    seen: Counter[str] = Counter()
    for _, d, _ in incident_run.valid:
        v = d["ts"]
        if isinstance(v, int):
            seen["epoch"] += 1
        else:
            zone = "Z" if v.endswith("Z") else v[-6:]
            seen[zone + ("_ms" if "." in v else "_s")] += 1
    for fmt in ("epoch", "Z_ms", "Z_s", "+08:00_ms", "+08:00_s", "+00:00_ms", "-05:00_ms"):
        assert seen[fmt] > 0, fmt


def test_key_order_varies_and_unknown_fields_appear(incident_run: Run) -> None:
    first_keys = Counter(next(iter(d)) for _, d, _ in incident_run.valid)
    assert first_keys["event_id"] > 0 and len(first_keys) > 1
    known = {"event_id", "type", "ts", "region", "channel", "code_id", "user_id", "batch_id"}
    known |= {"sku", "outlet_id", "device_id", "city", "lat", "lon", "campaign_id", "variant"}
    known |= {"amount", "order_id", "quantity", "codes"}
    assert any(set(d) - known for _, d, _ in incident_run.valid)


# -- incidents and a clean background --------------------------------------------------------------


def test_labels_cover_every_alert_kind(incident_run: Run, clean_run: Run) -> None:
    assert clean_run.labels == []
    labels = incident_run.labels
    assert {lb["kind"] for lb in labels} == ALERT_KINDS
    fields = ["incident_id", "kind", "entity_type", "entity_id", "region", "channel", "start"]
    fields += ["end", "description"]
    start = datetime.fromisoformat(incident_run.expected["start"].replace("Z", "+00:00"))
    for lb in labels:
        assert list(lb) == fields
        a = datetime.fromisoformat(lb["start"].replace("Z", "+00:00"))
        b = datetime.fromisoformat(lb["end"].replace("Z", "+00:00"))
        assert lb["start"].endswith("Z") and a < b
        hours_in = (a - start).total_seconds() / 3600
        if lb["kind"] in ("high_scan_low_redemption", "kpi_anomaly", "outlet_self_redemption"):
            assert hours_in >= 0.6 * 30
        else:
            assert hours_in >= 1
    kinds = Counter((lb["kind"], lb["entity_type"]) for lb in labels)
    assert kinds[("high_scan_low_redemption", "region")] == 1
    assert kinds[("high_scan_low_redemption", "outlet")] == 1
    assert kinds[("reward_farming", "user")] == 1
    assert kinds[("reward_farming", "device")] == 1
    assert kinds[("kpi_anomaly", "region")] == 2


def test_incident_events_are_in_the_file(incident_run: Run) -> None:
    by_field: dict[str, set[str]] = defaultdict(set)
    for _, d, _ in incident_run.valid:
        for k in ("code_id", "user_id", "device_id", "batch_id", "outlet_id", "region"):
            if k in d:
                by_field[k].add(d[k])
    field_of = {
        "code": "code_id",
        "user": "user_id",
        "device": "device_id",
        "batch": "batch_id",
        "outlet": "outlet_id",
        "region": "region",
    }
    for lb in incident_run.labels:
        assert lb["entity_id"] in by_field[field_of[lb["entity_type"]]], lb
    dup = next(lb for lb in incident_run.labels if lb["kind"] == "duplicate_code")
    users = {d["user_id"] for _, d, _ in incident_run.valid if d.get("code_id") == dup["entity_id"]}
    assert 8 <= len(users) <= 20


def test_background_is_clean(clean_run: Run) -> None:
    code_users: dict[str, set[str]] = defaultdict(set)
    device_users: dict[str, set[str]] = defaultdict(set)
    shipped: dict[str, str] = {}
    foreign: Counter[str] = Counter()
    scans = 0
    seen: set[str] = set()
    for _, d, _ in clean_run.valid:
        if d["event_id"] in seen:
            continue
        seen.add(d["event_id"])
        if d["type"] == "shipment":
            shipped[d["batch_id"]] = d["region"]
        elif d["type"] == "scan":
            scans += 1
            code_users[d["code_id"]].add(d["user_id"])
            device_users[d["device_id"]].add(d["user_id"])
            b = d["batch_id"]
            if b in shipped and shipped[b] != d["region"]:
                foreign[b] += 1
    assert max(len(u) for u in code_users.values()) == 1
    assert max(len(u) for u in device_users.values()) == 1
    assert max(foreign.values(), default=0) <= 2
    assert sum(foreign.values()) < 0.002 * scans
    unshipped = {d["batch_id"] for _, d, _ in clean_run.valid if d["type"] == "scan"} - set(shipped)
    assert 1 <= len(unshipped) <= 3

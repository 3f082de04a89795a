"""The events intake (msgspec JSON → Null table → view) stores exactly the rows that the
Arrow columns of the same events would: every column, every type, awkward values."""

from __future__ import annotations

import math
import random
import struct
from itertools import islice
from pathlib import Path

from koxpulse.events import AnyEvent, Order, Redemption, Scan, Shipment, fast_decoder
from koxpulse.simulator import simulate
from sinks.clickhouse import ClickHouseTarget, ClickHouseWriter, ensure_schema
from sinks.event_columns import _FIELDS, event_columns, event_lines
from sinks.tables import INTAKE_RENAMES, quote_ident

T0 = 1_795_305_600_000
COLUMNS = (
    "ts, type, event_id, region, channel, user_id, code_id, order_id, batch_id, sku, outlet_id, "
    "device_id, city, lat, lon, campaign_id, variant, amount, quantity, units, version"
)


def _floats(rng: random.Random, lo: float, hi: float) -> list[float]:
    edges = [lo, hi, 0.0, -0.0, 5e-324, 2.2250738585072014e-308, 0.1, 1 / 3, 1e-7, 59.7]
    edges += [rng.uniform(lo, hi) for _ in range(40)]
    bits = (struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(400))
    edges += list(islice((x for x in bits if lo <= x <= hi), 40))
    return [x for x in edges if lo <= x <= hi]


def awkward_events() -> list[AnyEvent]:
    rng = random.Random(3)
    texts = ['a"b\\c\n\t\u0000\u2028', "é中😀", "x" * 64, "朝阳区", " ", "null"]
    out: list[AnyEvent] = []
    for i, (amount, lat, lon) in enumerate(
        zip(_floats(rng, 0, 1e12), _floats(rng, -90, 90), _floats(rng, -180, 180), strict=False)
    ):
        t = texts[i % len(texts)]
        common = {"event_id": f"e{i}-{t}", "ts": T0 + i, "region": t, "channel": f"c{i % 3}"}
        out.append(Scan(**common, code_id=t, user_id=f"u{i}", lat=lat, lon=lon, city=t, sku=None))
        out.append(Redemption(**common, code_id="c", user_id=t, amount=amount))
        out.append(Order(**common, order_id=t, user_id="u", amount=amount, quantity=2**53))
        out.append(Shipment(**common, batch_id=t, codes=i + 1, outlet_id=t))
    out.append(
        Scan(
            event_id="bare",
            ts="2026-11-22T00:00:00Z",
            region="r",
            channel="c",
            code_id="c",
            user_id="u",
        )
    )
    return out


def simulated_events(tmp_path: Path) -> list[AnyEvent]:
    path = tmp_path / "sim.jsonl"
    simulate(path, hours=0.5, seed=5, scale=0.3, incidents=False)
    events = []
    for line in path.read_bytes().splitlines():
        try:
            events.append(fast_decoder.decode(line))
        except Exception:
            continue
    return events


def test_every_event_field_has_its_column() -> None:
    for cls, fields in _FIELDS.items():
        own = set(cls.__struct_fields__) - {"event_id", "ts", "region", "channel"}
        assert {INTAKE_RENAMES.get(f, f) for f in own} == set(fields), cls


def test_intake_rows_equal_the_arrow_columns(chdb_dir, chdb_client, database, tmp_path) -> None:
    ensure_schema(chdb_client, database)
    events = awkward_events() + simulated_events(tmp_path)
    ts = [T0 + 7 * i for i in range(len(events))]
    target = ClickHouseTarget.parse(f"chdb://{chdb_dir}", database)
    w = ClickHouseWriter(target, client=chdb_client, batch_rows=1_000_000)  # type: ignore[arg-type]
    half = len(events) // 2
    w.add("events", event_lines(events[:half], ts[:half], 5))
    w.add("events", event_lines(events[half:], ts[half:], 6))
    w.flush()
    db = quote_ident(database)
    via_intake = chdb_client.query(
        f"SELECT {COLUMNS} FROM {db}.events ORDER BY event_id, ts"
    ).result_rows
    chdb_client.command(f"TRUNCATE TABLE {db}.events")
    w.add("events", event_columns(events[:half], ts[:half], 5))
    w.add("events", event_columns(events[half:], ts[half:], 6))
    w.flush()
    via_arrow = chdb_client.query(
        f"SELECT {COLUMNS} FROM {db}.events ORDER BY event_id, ts"
    ).result_rows
    assert len(via_intake) == len(events)
    for a, b in zip(via_intake, via_arrow, strict=True):
        assert a == b
        for x, y in zip(a, b, strict=True):  # floats bit for bit (0.0 vs -0.0 too)
            if isinstance(x, float):
                assert math.copysign(1, x) == math.copysign(1, y)

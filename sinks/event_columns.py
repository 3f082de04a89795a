"""Accepted events for the ``events`` table.

Drill-downs ("which outlets explain the drop?") and A/B readouts need the events
themselves, not only the minute roll-ups. Any per-column work on the events in Python
(one Python row per event, or Arrow columns filled from the events' attributes) costs
more than decoding the event did. :func:`event_lines` hands ClickHouse msgspec's JSON of
the decoded events instead, one C call per batch, and ClickHouse fills the columns on
the sink's thread (see :func:`sinks.tables.events_intake_sql`). :func:`event_columns`
builds the same rows as an Arrow table: the reference the intake is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import attrgetter, is_
from typing import Any

import msgspec
import pyarrow as pa

from koxpulse.events import AnyEvent, Order, Redemption, Scan, Shipment
from sinks.clickhouse import EventLines

EVENTS_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("type", pa.string()),
        ("event_id", pa.string()),
        ("region", pa.string()),
        ("channel", pa.string()),
        ("user_id", pa.string()),
        ("code_id", pa.string()),
        ("order_id", pa.string()),
        ("batch_id", pa.string()),
        ("sku", pa.string()),
        ("outlet_id", pa.string()),
        ("device_id", pa.string()),
        ("city", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("campaign_id", pa.string()),
        ("variant", pa.string()),
        ("amount", pa.float64()),
        ("quantity", pa.int64()),
        ("units", pa.int64()),
        ("version", pa.uint64()),
    ]
)

# which struct attribute fills which column, per event type ("" = always null)
_FIELDS: dict[type[AnyEvent], dict[str, str]] = {
    Scan: {
        "user_id": "user_id",
        "code_id": "code_id",
        "batch_id": "batch_id",
        "sku": "sku",
        "outlet_id": "outlet_id",
        "device_id": "device_id",
        "city": "city",
        "lat": "lat",
        "lon": "lon",
        "campaign_id": "campaign_id",
        "variant": "variant",
    },
    Redemption: {
        "user_id": "user_id",
        "code_id": "code_id",
        "outlet_id": "outlet_id",
        "device_id": "device_id",
        "campaign_id": "campaign_id",
        "variant": "variant",
        "amount": "amount",
    },
    Order: {
        "user_id": "user_id",
        "order_id": "order_id",
        "sku": "sku",
        "outlet_id": "outlet_id",
        "campaign_id": "campaign_id",
        "variant": "variant",
        "amount": "amount",
        "quantity": "quantity",
    },
    Shipment: {"batch_id": "batch_id", "sku": "sku", "outlet_id": "outlet_id", "units": "codes"},
}
_TYPE_NAMES: dict[type[AnyEvent], str] = {
    Scan: "scan",
    Redemption: "redemption",
    Order: "order",
    Shipment: "shipment",
}
_CLASS = attrgetter("__class__")
_TS_TYPE = EVENTS_SCHEMA.field("ts").type
_COMMON = ("event_id", "region", "channel")


def _layout(fields: dict[str, str]) -> tuple[attrgetter[Any], pa.StructType, tuple[str, ...]]:
    """For one event type: a getter of the filled columns' values as one tuple, the Arrow
    struct those tuples convert to, and the column names in that order."""
    names = _COMMON + tuple(f.name for f in EVENTS_SCHEMA if f.name in fields)
    attrs = [fields.get(name) or name for name in names]
    struct = pa.struct([pa.field(name, EVENTS_SCHEMA.field(name).type) for name in names])
    return attrgetter(attrs[0], *attrs[1:]), struct, names


_LAYOUTS = {cls: _layout(fields) for cls, fields in _FIELDS.items()}


_encoder = msgspec.json.Encoder()


def event_lines(events: Sequence[AnyEvent], ts: Sequence[int], version: int) -> EventLines:
    """``[ts_ms, event, version]`` JSON lines, one per event, in the given order.

    The event object is exactly what the decoder kept (its fields, no unknown ones, the
    ``type`` tag first); zip's tuples are reused as encoding goes, so nothing is built
    per event in Python.

    >>> from koxpulse.events import Scan
    >>> ev = Scan(event_id="e1", ts=0, region="CN-SD", channel="offline", code_id="c",
    ...           user_id="u", outlet_id="o1")
    >>> event_lines([ev], [60_000], 7).lines[:48]
    b'[60000,{"type":"scan","event_id":"e1","ts":0,"re'
    """
    return EventLines(_encoder.encode_lines(zip(ts, events, repeat(version))), len(events))


def event_columns(events: Sequence[AnyEvent], ts: Sequence[int], version: int) -> pa.Table:
    """An Arrow table with :data:`EVENTS_SCHEMA`, one row per event, in the given order
    within each event type.

    Per type, one C-level pass takes each event's fields as a tuple (``attrgetter`` of
    several names) and Arrow converts the tuples to a struct array in one call, whose
    children are the columns: each event is visited once, not once per column.

    >>> from koxpulse.events import Scan
    >>> ev = Scan(event_id="e1", ts=0, region="CN-SD", channel="offline", code_id="c",
    ...           user_id="u", outlet_id="o1")
    >>> t = event_columns([ev], [60_000], 7)
    >>> t.num_rows, t.column("outlet_id").to_pylist(), t.column("order_id").to_pylist()
    (1, ['o1'], [None])
    """
    classes = list(map(_CLASS, events))
    present = set(classes)
    parts: list[pa.Table] = []
    for cls, (getter, struct, filled) in _LAYOUTS.items():
        if cls not in present:
            continue
        if len(present) == 1:
            evs, tss = events, ts
        else:
            mask = list(map(is_, classes, repeat(cls)))
            evs, tss = list(compress(events, mask)), list(compress(ts, mask))
        n = len(evs)
        fields = pa.array(list(map(getter, evs)), struct).flatten()
        cols = dict(zip(filled, fields, strict=True))
        cols["ts"] = pa.array(tss, pa.int64()).cast(_TS_TYPE)
        cols["type"] = pa.repeat(pa.scalar(_TYPE_NAMES[cls], pa.string()), n)
        cols["version"] = pa.repeat(pa.scalar(version, pa.uint64()), n)
        parts.append(
            pa.table(
                [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in EVENTS_SCHEMA],
                schema=EVENTS_SCHEMA,
            )
        )
    if not parts:
        return EVENTS_SCHEMA.empty_table()
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

"""DDL of the contract's tables (v1 §2), in one place so sinks, queries and docs agree.

Every table is ReplacingMergeTree keyed by the row's identity with a version
column: re-emitted rows (replays, restarts) replace older ones, so ``FINAL``
reads are exact however often a row was written.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    version: str = "version"
    partition_by: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def create_sql(self, database: str) -> str:
        cols = ",\n  ".join(f"{quote_ident(c)} {t}" for c, t in self.columns)
        parts = [
            f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{quote_ident(self.name)} (\n"
            f"  {cols}\n)",
            f"ENGINE = ReplacingMergeTree({quote_ident(self.version)})",
        ]
        if self.partition_by:
            parts.append(f"PARTITION BY {self.partition_by}")
        parts.append("ORDER BY (" + ", ".join(quote_ident(c) for c in self.order_by) + ")")
        return "\n".join(parts)


def quote_ident(name: str) -> str:
    """Backquote a ClickHouse identifier so no name can break out of its position."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


TS = "DateTime64(3, 'UTC')"

KPI_MINUTE = Table(
    "kpi_minute",
    (
        ("window_start", TS),
        ("region", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("scans", "UInt64"),
        ("unique_codes", "UInt64"),
        ("scanners", "UInt64"),
        ("redemptions", "UInt64"),
        ("orders", "UInt64"),
        ("revenue", "Float64"),
        ("buyers", "UInt64"),
        ("repeat_buyers", "UInt64"),
        ("redemption_rate", "Nullable(Float64)"),
        ("repurchase_rate", "Nullable(Float64)"),
        ("version", "UInt64"),
    ),
    order_by=("region", "channel", "window_start"),
    partition_by="toYYYYMM(window_start)",
)

ALERTS = Table(
    "alerts",
    (
        ("alert_id", "String"),
        ("kind", "LowCardinality(String)"),
        ("severity", "LowCardinality(String)"),
        ("status", "LowCardinality(String)"),
        ("region", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("entity_type", "LowCardinality(String)"),
        ("entity_id", "String"),
        ("starts_at", TS),
        ("ends_at", f"Nullable({TS})"),
        ("value", "Nullable(Float64)"),
        ("baseline", "Nullable(Float64)"),
        ("summary", "String"),
        ("details", "String"),
        ("version", "UInt64"),
    ),
    order_by=("alert_id",),
)

DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("received_at", TS),
        ("source", "String"),
        ("position", "String"),
        ("reason", "String"),
        ("reason_code", "LowCardinality(String)"),
        ("raw", "String"),
        ("version", "UInt64"),
    ),
    order_by=("source", "position"),
)

LATE_EVENTS = Table(
    "late_events",
    (
        ("received_at", TS),
        ("ts", TS),
        ("type", "LowCardinality(String)"),
        ("region", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("event_id", "String"),
        ("source", "String"),
        ("position", "String"),
        ("version", "UInt64"),
    ),
    order_by=("event_id",),
)

NULL_STR = "Nullable(String)"
EVENTS = Table(
    "events",
    (
        ("ts", TS),
        ("type", "LowCardinality(String)"),
        ("event_id", "String"),
        ("region", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("user_id", NULL_STR),
        ("code_id", NULL_STR),
        ("order_id", NULL_STR),
        ("batch_id", NULL_STR),
        ("sku", "LowCardinality(Nullable(String))"),
        ("outlet_id", NULL_STR),
        ("device_id", NULL_STR),
        ("city", "LowCardinality(Nullable(String))"),
        ("lat", "Nullable(Float64)"),
        ("lon", "Nullable(Float64)"),
        ("campaign_id", "LowCardinality(Nullable(String))"),
        ("variant", "LowCardinality(Nullable(String))"),
        ("amount", "Nullable(Float64)"),
        ("quantity", "Nullable(Int64)"),
        ("units", "Nullable(Int64)"),
        ("version", "UInt64"),
    ),
    # The sorting key is the row's identity for FINAL: a redelivered event is identical in
    # every one of these columns, and region/time first keeps drill-down scans short.
    order_by=("region", "channel", "type", "ts", "event_id"),
    partition_by="toYYYYMM(ts)",
)
"""Every accepted event (deduplicated, not late): what drill-downs and A/B readouts read.
Columns that do not apply to an event's type are NULL; ``units`` is a shipment's
``codes``."""

TABLES = {t.name: t for t in (KPI_MINUTE, ALERTS, DEAD_LETTERS, LATE_EVENTS, EVENTS)}

# The events table is filled through an intake: the dataflow hands ClickHouse each batch of
# accepted events as msgspec's JSON of the decoded events (one C call per batch), and a
# materialized view moves them into ``events``. Building Arrow columns from the events in
# Python cost more than decoding them; ClickHouse reads the JSON on the sink's own thread,
# which does not hold the GIL. The intake stores nothing (ENGINE = Null).
EVENTS_INTAKE = "events_intake"
EVENTS_INTAKE_VIEW = "events_intake_view"
EVENTS_INTAKE_COLUMNS = ("ts_ms", "event", "version")
# an event's JSON field -> the events column it fills, where the names differ
INTAKE_RENAMES = {"codes": "units"}


def _plain(ctype: str) -> str:
    """The element type inside the intake's tuple: LowCardinality is the table's business."""
    if ctype.startswith("LowCardinality(") and ctype.endswith(")"):
        return ctype[len("LowCardinality(") : -1]
    return ctype


def events_intake_sql(database: str) -> list[str]:
    """DDL of the intake (idempotent): a Null table of ``(ts_ms, event, version)`` rows whose
    ``event`` is the event's JSON object read as a named tuple (absent fields are NULL,
    fields the events table has no column for are ignored), and the view into ``events``."""
    field_of = {column: field for field, column in INTAKE_RENAMES.items()}
    fields = [
        (field_of.get(name, name), _plain(ctype))
        for name, ctype in EVENTS.columns
        if name not in ("ts", "version")
    ]
    tuple_type = ", ".join(f"{quote_ident(f)} {t}" for f, t in fields)
    db = quote_ident(database)
    intake = f"{db}.{quote_ident(EVENTS_INTAKE)}"
    select = ", ".join(
        "fromUnixTimestamp64Milli(ts_ms, 'UTC') AS ts"
        if name == "ts"
        else "version"
        if name == "version"
        else f"event.{quote_ident(field_of.get(name, name))} AS {quote_ident(name)}"
        for name in EVENTS.column_names
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {intake} "
        f"(ts_ms Int64, event Tuple({tuple_type}), version UInt64) ENGINE = Null",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{quote_ident(EVENTS_INTAKE_VIEW)} "
        f"TO {db}.{quote_ident(EVENTS.name)} AS SELECT {select} FROM {intake}",
    ]

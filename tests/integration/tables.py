"""Read every table of a run in a comparable form: exact columns under FINAL, without the
columns that record wall-clock time (version, received_at), sorted by the row's identity."""

from __future__ import annotations

from typing import Any

from tests.integration.test_replay_exact import KPI_SQL, query

TABLE_SQL = {
    "kpi_minute": KPI_SQL,
    "alerts": (
        "SELECT alert_id, kind, severity, status, region, channel, entity_type, entity_id, "
        "toUnixTimestamp64Milli(starts_at) AS starts_ms, "
        "toUnixTimestamp64Milli(ends_at) AS ends_ms, value, baseline, summary, details "
        "FROM koxpulse.alerts FINAL ORDER BY alert_id"
    ),
    "dead_letters": (
        "SELECT source, position, reason_code, reason, raw FROM koxpulse.dead_letters FINAL "
        "ORDER BY source, position"
    ),
    "late_events": (
        "SELECT event_id, type, region, channel, toUnixTimestamp64Milli(ts) AS ts_ms "
        "FROM koxpulse.late_events FINAL ORDER BY event_id"
    ),
    "events": (
        "SELECT type, count() AS n, uniqExact(event_id) AS ids, "
        "sum(cityHash64(event_id, region, channel, toUnixTimestamp64Milli(ts))) AS digest "
        "FROM koxpulse.events FINAL GROUP BY type ORDER BY type"
    ),
}


def read_tables(dsn: str, names: tuple[str, ...] = tuple(TABLE_SQL)) -> dict[str, list[Any]]:
    return {name: query(dsn, TABLE_SQL[name]) for name in names}

"""The macro expander writes what the ClickHouse plugin writes (expected strings taken from
the plugin's pkg/macros/macros.go and its frontend's applyConditionalAll / format)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dashboards.macros import ExpansionError, QueryContext, Variable, expand

START = datetime(2026, 11, 16, 0, 0, 0, 250_000, tzinfo=UTC)  # 1794787200.25
END = datetime(2026, 11, 17, 8, 0, 0, tzinfo=timezone(timedelta(hours=8)))  # 1794873600
VARS = {
    "region": Variable(("CN-GD", "O'Neil")),
    "channel": Variable(("$__all",), ("ecommerce", "offline")),
    "one": Variable(("offline",)),
}
CTX = QueryContext(START, END, interval_s=600, variables=VARS)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__timeFilter(ts)", "ts >= toDateTime(1794787200) AND ts <= toDateTime(1794873600)"),
        (
            "$__timeFilter_ms(ts)",
            "ts >= fromUnixTimestamp64Milli(1794787200250) AND "
            "ts <= fromUnixTimestamp64Milli(1794873600000)",
        ),
        ("$__fromTime - $__toTime", "toDateTime(1794787200) - toDateTime(1794873600)"),
        (
            "$__fromTime_ms,$__toTime_ms",
            "fromUnixTimestamp64Milli(1794787200250),fromUnixTimestamp64Milli(1794873600000)",
        ),
        (
            "$__timeInterval(window_start)",
            "toStartOfInterval(toDateTime(window_start), INTERVAL 600 second)",
        ),
        (
            "$__timeInterval_ms(ts)",
            "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 600000 millisecond)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2026-11-16') AND d <= toDate('2026-11-17')"),
        ("$__interval_s", "600"),
        ("region IN (${region:sqlstring})", "region IN ('CN-GD','O''Neil')"),
        ("channel IN (${channel:sqlstring})", "channel IN ('ecommerce','offline')"),
        ("x = '$one'", "x = 'offline'"),
        ("x IN ($region)", "x IN ('CN-GD','O'Neil')"),
        (
            "WHERE $__conditionalAll(channel IN (${channel:sqlstring}), $channel) AND 1",
            "WHERE 1=1 AND 1",
        ),
        (
            "WHERE $__conditionalAll(region IN (${region:sqlstring}), $region)",
            "WHERE region IN ('CN-GD','O''Neil')",
        ),
        (
            "$__conditionalAll(a IN (f(1, 2)), ${channel}) AND "
            "$__conditionalAll(b IN (${one:sqlstring}), $one)",
            "1=1 AND b IN ('offline')",
        ),
    ],
)
def test_expansion_matches_the_plugin(sql: str, expected: str) -> None:
    assert expand(sql, CTX) == expected


def test_a_short_interval_is_at_least_one_second() -> None:
    ctx = QueryContext(START, END, interval_s=0.2, variables=VARS)
    assert expand("$__timeInterval(t) $__interval_s", ctx) == (
        "toStartOfInterval(toDateTime(t), INTERVAL 1 second) 1"
    )


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeGroup(ts, 1m)", "unknown macro \\$__timeGroup"),
        ("$__timeFilter(a, b)", "expects 1 argument, received 2"),
        ("region = $nope", "unknown variable \\$nope"),
        ("$__timeFilter(ts", "unbalanced"),
        ("${region:csv}", "format 'csv'"),
    ],
)
def test_what_is_not_modelled_is_an_error(sql: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        expand(sql, CTX)


def test_the_time_range_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        QueryContext(datetime(2026, 1, 1), END)

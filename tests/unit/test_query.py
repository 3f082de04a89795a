"""The read-only guard of ``koxpulse query`` and its output formats."""

from __future__ import annotations

import pytest

from koxpulse.errors import ConfigError
from koxpulse.query import check_read_only, format_rows


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count() from koxpulse.kpi_minute FINAL;",
        "WITH 1 AS x SELECT x",
        "  -- comment\nSELECT 1",
        "SHOW TABLES FROM koxpulse",
        "DESCRIBE TABLE koxpulse.alerts",
        "SELECT ';' AS semicolon",
    ],
)
def test_read_only_statements_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("DROP TABLE koxpulse.kpi_minute", "not DROP"),
        ("INSERT INTO t VALUES (1)", "not INSERT"),
        ("SELECT 1; DROP TABLE t", "single statement"),
        ("/* hi */ ALTER TABLE t DELETE WHERE 1", "not ALTER"),
        ("   ", "empty"),
    ],
)
def test_anything_else_is_refused(sql: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_read_only(sql)


def test_formats() -> None:
    cols = ["region", "n", "rate"]
    rows = [("CN-SD", 3, None), ("CN-GD", 10, 0.5)]
    assert format_rows(cols, rows, "csv") == "region,n,rate\nCN-SD,3,\nCN-GD,10,0.5\n"
    assert format_rows(cols, rows, "json") == (
        '{"region": "CN-SD", "n": 3, "rate": null}\n{"region": "CN-GD", "n": 10, "rate": 0.5}\n'
    )
    table = format_rows(cols, rows, "table").splitlines()
    assert table[0].split(" | ")[0].strip() == "region" and "NULL" in table[2]

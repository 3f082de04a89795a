"""Read-only queries for people: one statement, refused unless it only reads."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, QueryError

_READ_ONLY = re.compile(r"^(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def check_read_only(sql: str) -> str:
    """Return the statement without a trailing ``;`` or refuse it (exit code 2).

    The server is also asked to run it with ``readonly=1``; this check gives the
    user a clear message before anything is sent.
    """
    text = _COMMENT.sub(" ", sql).strip()
    text = text[:-1].rstrip() if text.endswith(";") else text
    if not text:
        raise ConfigError("query is empty")
    if ";" in _strip_strings(text):
        raise ConfigError("query must be a single statement")
    if not _READ_ONLY.match(text):
        word = text.split(None, 1)[0].upper()
        raise ConfigError(
            "only read-only queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) are allowed, "
            f"not {word}"
        )
    return text


def _strip_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`", "''", sql)


def run_query(client: Client, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
    stmt = check_read_only(sql)
    try:
        result = client.query(stmt, settings={"readonly": 1})
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise QueryError(f"query failed: {first[0] if first else exc.__class__.__name__}") from exc
    return list(result.column_names), list(result.result_rows)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (
            value.isoformat(sep=" ", timespec="milliseconds")
            if value.tzinfo is None
            else value.isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def format_rows(columns: list[str], rows: list[Sequence[Any]], fmt: str) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if v is None else _plain(v) for v in row])
        return buf.getvalue()
    if fmt == "json":
        return "".join(
            json.dumps(
                dict(zip(columns, (_plain(v) for v in row), strict=True)), ensure_ascii=False
            )
            + "\n"
            for row in rows
        )
    cells = [[("NULL" if v is None else str(_plain(v))) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out) + "\n"

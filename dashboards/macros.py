"""Expand a panel's SQL the way Grafana and the ClickHouse plugin do, so tests can run it.

Grafana rewrites a query in two places before ClickHouse sees it:

1. the plugin's frontend (``CHDatasource.applyTemplateVariables``): first
   ``$__conditionalAll(condition, $var)`` becomes ``1=1`` when ``$var`` is "All",
   then dashboard variables are interpolated (``${var:sqlstring}`` quotes each value
   and doubles single quotes; a bare ``$var`` of several values becomes ``'a','b'``);
2. the plugin's backend (``pkg/macros/macros.go`` via sqlds): ``$__timeFilter(col)``
   becomes ``col >= toDateTime(FROM) AND col <= toDateTime(TO)`` in epoch seconds,
   ``$__timeInterval(col)`` becomes ``toStartOfInterval(toDateTime(col), INTERVAL N second)``,
   and so on for the ``_ms`` variants, ``$__fromTime``, ``$__toTime``, ``$__dateFilter``,
   ``$__interval_s``.

Only what the dashboards use is implemented; an unknown ``$__macro`` or variable is
an error here rather than SQL that happens to run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ALL = "$__all"


class ExpansionError(ValueError):
    """The SQL uses a macro or variable the expander (and so maybe Grafana) does not know."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable's current selection and, for "All", every option."""

    selected: tuple[str, ...]  # ("$__all",) for All
    options: tuple[str, ...] = ()

    @property
    def is_all(self) -> bool:
        return self.selected == (ALL,)

    @property
    def values(self) -> tuple[str, ...]:
        return self.options if self.is_all else self.selected


@dataclass(frozen=True, slots=True)
class QueryContext:
    start: datetime
    end: datetime
    interval_s: float = 60.0
    variables: Mapping[str, Variable] | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("the time range must be timezone-aware")


def expand(sql: str, ctx: QueryContext) -> str:
    variables = dict(ctx.variables or {})
    sql = _conditional_all(sql, variables)
    sql = _interpolate(sql, variables)
    return _backend_macros(sql, ctx)


# -- frontend: $__conditionalAll, then variables -------------------------------------------

_VAR_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def _conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    """As the plugin does it: innermost-last by ``lastIndexOf``, args split at depth 1."""
    macro = "$__conditionalAll("
    at = sql.rfind(macro)
    while at != -1:
        args, end = _macro_args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise ExpansionError(f"$__conditionalAll needs 2 arguments, got {len(args)}")
        phrase = args[0]
        found = _VAR_IN_ARG.search(args[1].strip())
        if found:
            var = variables.get(found.group(0))
            if var is None:
                raise ExpansionError(f"unknown variable ${found.group(0)}")
            if var.is_all or var.selected in ((), ("",)):
                phrase = "1=1"
        sql = sql[:at] + phrase + sql[end:]
        at = sql.rfind(macro)
    return sql


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren`` and the index after its ``)``."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise ExpansionError("unbalanced parentheses in a macro call")


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")


def _interpolate(sql: str, variables: Mapping[str, Variable]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        var = variables.get(name)
        if var is None:
            raise ExpansionError(f"unknown variable ${name}")
        values = var.values
        if fmt == "sqlstring":
            return ",".join("'" + v.replace("'", "''") + "'" for v in values)
        if fmt == "raw":
            return ",".join(values)
        if fmt is not None:
            raise ExpansionError(f"variable format {fmt!r} is not modelled")
        # the plugin's own formatter: several values are quoted and joined, one is raw
        if len(values) == 1 and not var.is_all:
            return values[0]
        return "'" + "','".join(values) + "'"

    return _VARIABLE.sub(sub, sql)


# -- backend: sqlds finds $__name\b and an optional bracketed argument list ------------------


def _seconds(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp())


def _millis(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp() * 1000)


def _backend_macros(sql: str, ctx: QueryContext) -> str:
    frm, to = ctx.start, ctx.end
    interval = max(int(ctx.interval_s), 1)
    interval_ms = max(int(ctx.interval_s * 1000), 1)

    def one(args: Sequence[str], name: str) -> str:
        if len(args) != 1:
            raise ExpansionError(f"$__{name} expects 1 argument, received {len(args)}")
        return args[0]

    table = {
        "fromTime": lambda a: f"toDateTime({_seconds(frm)})",
        "toTime": lambda a: f"toDateTime({_seconds(to)})",
        "fromTime_ms": lambda a: f"fromUnixTimestamp64Milli({_millis(frm)})",
        "toTime_ms": lambda a: f"fromUnixTimestamp64Milli({_millis(to)})",
        "timeFilter": lambda a: (
            f"{one(a, 'timeFilter')} >= toDateTime({_seconds(frm)}) AND "
            f"{a[0]} <= toDateTime({_seconds(to)})"
        ),
        "timeFilter_ms": lambda a: (
            f"{one(a, 'timeFilter_ms')} >= fromUnixTimestamp64Milli({_millis(frm)}) AND "
            f"{a[0]} <= fromUnixTimestamp64Milli({_millis(to)})"
        ),
        "dateFilter": lambda a: (
            f"{one(a, 'dateFilter')} >= toDate('{frm.astimezone(UTC):%Y-%m-%d}') AND "
            f"{a[0]} <= toDate('{to.astimezone(UTC):%Y-%m-%d}')"
        ),
        "timeInterval": lambda a: (
            f"toStartOfInterval(toDateTime({one(a, 'timeInterval')}), INTERVAL {interval} second)"
        ),
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({one(a, 'timeInterval_ms')}, 3), "
            f"INTERVAL {interval_ms} millisecond)"
        ),
        "interval_s": lambda a: str(interval),
    }
    pattern = re.compile(r"\$__(\w+)")
    out = []
    pos = 0
    for m in pattern.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        if name not in table:
            raise ExpansionError(f"unknown macro $__{name}")
        end = m.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            raw_args, end = _macro_args(sql, end)
            args = [x.strip() for x in raw_args]
        out.append(sql[pos : m.start()])
        out.append(table[name](args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)

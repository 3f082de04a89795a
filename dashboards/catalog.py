"""What every panel's query must return, recorded while the dashboards are built.

Grafana only finds out at view time that a query returns the wrong columns; the
tests find out before. Each ClickHouse query is registered with the columns its
panel reads, each PromQL expression with its panel, and the tests check that the
committed JSON holds exactly the registered queries and that each one runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SqlExpectation:
    dashboard: str  # dashboard uid
    panel: str  # panel title (or "variable <name>" / "annotation <name>")
    ref_id: str
    sql: str
    columns: tuple[str, ...]
    time_series: bool = False  # Grafana needs a "time" column first and rows in time order


@dataclass(frozen=True, slots=True)
class PromExpectation:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


@dataclass
class Catalog:
    sql: list[SqlExpectation] = field(default_factory=list)
    promql: list[PromExpectation] = field(default_factory=list)

    def add_sql(
        self,
        dashboard: str,
        panel: str,
        ref_id: str,
        sql: str,
        columns: tuple[str, ...],
        *,
        time_series: bool = False,
    ) -> str:
        self.sql.append(SqlExpectation(dashboard, panel, ref_id, sql.strip(), columns, time_series))
        return sql.strip()

    def add_promql(self, dashboard: str, panel: str, ref_id: str, expr: str) -> str:
        self.promql.append(PromExpectation(dashboard, panel, ref_id, expr))
        return expr

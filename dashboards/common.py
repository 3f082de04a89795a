"""Pieces every dashboard shares: the database, variable filters, panel builders.

Panels are built through these helpers so that each query is registered in the
:class:`~dashboards.catalog.Catalog` with the columns its panel reads, and so that
no panel goes out without a description in plain words.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.catalog import Catalog
from dashboards.clickhouse import SqlQuery, clickhouse_ref, prometheus_ref

DATABASE = "koxpulse"  # the contract's default database; the datasource's defaultDatabase too

# Grafana's "All" expands to every option; $__conditionalAll drops the condition then, so
# an "All" dashboard reads the whole table instead of a list of every value.
REGION_FILTER = "$__conditionalAll(region IN (${region:sqlstring}), $region)"
CHANNEL_FILTER = "$__conditionalAll(channel IN (${channel:sqlstring}), $channel)"
CAMPAIGN_FILTER = "$__conditionalAll(campaign_id IN (${campaign:sqlstring}), $campaign)"


def t(name: str) -> str:
    """A table of the koxpulse database, as panels name it."""
    return f"{DATABASE}.{name}"


def sql_variable(
    catalog: Catalog, uid: str, name: str, label: str, sql: str, description: str
) -> db.QueryVariable:
    catalog.add_sql(uid, f"variable {name}", name, sql, ("value",))
    return (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(clickhouse_ref())
        .query({"editorType": "sql", "rawSql": sql.strip(), "queryType": "table"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def custom_variable(
    name: str, label: str, values: list[str], default: str, description: str
) -> db.CustomVariable:
    return (
        db.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .current(dm.VariableOption(selected=True, text=default, value=default))
        .options([dm.VariableOption(selected=v == default, text=v, value=v) for v in values])
    )


def _legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def ts_panel(
    catalog: Catalog,
    uid: str,
    title: str,
    description: str,
    sql: str,
    columns: tuple[str, ...],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    catalog.add_sql(uid, title, "A", sql, columns, time_series=True)
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(clickhouse_ref())
        .with_target(SqlQuery("A").sql(sql).time_series())
        .unit(unit)
        .legend(_legend())
        .span(width)
        .height(height)
    )


def table_panel(
    catalog: Catalog,
    uid: str,
    title: str,
    description: str,
    sql: str,
    columns: tuple[str, ...],
    *,
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    catalog.add_sql(uid, title, "A", sql, columns)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(clickhouse_ref())
        .with_target(SqlQuery("A").sql(sql).table())
        .span(width)
        .height(height)
    )


def funnel_panel(
    catalog: Catalog,
    uid: str,
    title: str,
    description: str,
    sql: str,
    columns: tuple[str, ...],
    *,
    width: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    catalog.add_sql(uid, title, "A", sql, columns)
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(clickhouse_ref())
        .with_target(SqlQuery("A").sql(sql).table())
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .show_unfilled(True)
        .span(width)
        .height(height)
    )


def prom_ts_panel(
    catalog: Catalog,
    uid: str,
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A Prometheus time series; ``targets`` are (expression, legend) pairs."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(prometheus_ref())
        .unit(unit)
        .legend(_legend())
        .span(width)
        .height(height)
    )
    queries: list[cogbuilder.Builder] = []
    for i, (expr, legend) in enumerate(targets):
        ref = chr(ord("A") + i)
        catalog.add_promql(uid, title, ref, expr)
        queries.append(
            pb.Dataquery()
            .expr(expr)
            .legend_format(legend)
            .ref_id(ref)
            .datasource(prometheus_ref())
            .range()
        )
    return panel.targets(queries)


def prom_stat_panel(
    catalog: Catalog,
    uid: str,
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    width: int = 6,
    height: int = 4,
) -> stat.Panel:
    catalog.add_promql(uid, title, "A", expr)
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(prometheus_ref())
        .with_target(pb.Dataquery().expr(expr).ref_id("A").datasource(prometheus_ref()).instant())
        .unit(unit)
        .span(width)
        .height(height)
    )


def alerts_annotation(catalog: Catalog, uid: str) -> db.AnnotationQuery:
    """Alerts from the alerts table as annotations: a band from start to resolution."""
    from dashboards.clickhouse import SqlAnnotationTarget

    sql = f"""
SELECT starts_at AS time, ends_at AS timeEnd,
       concat(kind, ' (', severity, ') ', region, '/', channel, ': ', summary) AS text,
       kind AS tags
FROM {t("alerts")} FINAL
WHERE $__timeFilter(starts_at) AND {REGION_FILTER} AND {CHANNEL_FILTER}
ORDER BY time
"""
    catalog.add_sql(uid, "annotation Alerts", "Anno", sql, ("time", "timeEnd", "text", "tags"))
    return (
        db.AnnotationQuery()
        .name("Alerts")
        .datasource(clickhouse_ref())
        .enable(True)
        .icon_color("red")
        .target(SqlAnnotationTarget(sql))
    )


def dashboard(uid: str, title: str, description: str, tags: list[str]) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["koxpulse", *tags])
        .timezone("browser")
        .time("now-2d", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .editable()
    )

"""The ClickHouse plugin's query, as a foundation-SDK data query.

The SDK ships typed queries for Grafana's core datasources but not for the
``grafana-clickhouse-datasource`` plugin, so this module adds one the way the SDK
is meant to be extended: a :class:`cogvariants.Dataquery` with ``to_json`` /
``from_json``, a builder, and a registered variant so that ``Dashboard.from_json``
decodes our panels' targets into this type (a misspelt key then fails the
round-trip check instead of passing through an untyped bag).

The fields are the plugin's SQL-editor query (``CHSqlQuery`` in its
``src/types/sql.ts``): ``editorType: "sql"``, ``rawSql``, ``queryType`` and the
backend's ``format`` (0 time series, 1 table).
"""

from __future__ import annotations

import enum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

PLUGIN_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "koxpulse-clickhouse"
PROMETHEUS_UID = "koxpulse-prometheus"


def clickhouse_ref() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=PLUGIN_TYPE, uid=DATASOURCE_UID)


def prometheus_ref() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


class Format(enum.IntEnum):
    """The plugin backend's result shape (grafana-plugin-sdk-go ``sqlutil.FormatQueryOption``)."""

    TIME_SERIES = 0
    TABLE = 1


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL query of the ClickHouse plugin."""

    def __init__(
        self,
        ref_id: str = "",
        raw_sql: str = "",
        query_type: str = "table",
        format_val: Format = Format.TABLE,
        datasource: dm.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.query_type = query_type
        self.format_val = format_val
        self.datasource = datasource if datasource is not None else clickhouse_ref()
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "editorType": "sql",
            "queryType": self.query_type,
            "format": int(self.format_val),
            "rawSql": self.raw_sql,
        }
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        if data.get("editorType", "sql") != "sql":
            raise ValueError(f"only SQL-editor queries are modelled, got {data['editorType']!r}")
        return cls(
            ref_id=data.get("refId", ""),
            raw_sql=data.get("rawSql", ""),
            query_type=data.get("queryType", "table"),
            format_val=Format(data.get("format", Format.TABLE)),
            datasource=dm.DataSourceRef.from_json(data["datasource"])
            if "datasource" in data
            else None,
            hide=data.get("hide"),
        )


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder in the SDK's style: ``SqlQuery("A").sql("SELECT ...").time_series()``."""

    def __init__(self, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(ref_id=ref_id)

    def build(self) -> ClickHouseQuery:
        return self._internal

    def sql(self, raw_sql: str) -> Self:
        self._internal.raw_sql = raw_sql.strip()
        return self

    def time_series(self) -> Self:
        self._internal.query_type = "timeseries"
        self._internal.format_val = Format.TIME_SERIES
        return self

    def table(self) -> Self:
        self._internal.query_type = "table"
        self._internal.format_val = Format.TABLE
        return self


class ClickHouseAnnotationTarget(dm.AnnotationTarget):
    """An annotation read by SQL: rows with ``time``, ``timeEnd``, ``text`` and ``tags``.

    The SDK types an annotation's target as the built-in Grafana datasource's
    (limit/tags/type: its own schema says "this should be a regular DataQuery");
    the ClickHouse plugin takes its ordinary query there.
    """

    def __init__(self, query: ClickHouseQuery) -> None:
        super().__init__()
        self.query = query

    def to_json(self) -> dict[str, object]:
        return self.query.to_json()


class SqlAnnotationTarget(cogbuilder.Builder[dm.AnnotationTarget]):
    def __init__(self, raw_sql: str, ref_id: str = "Anno") -> None:
        self._internal = ClickHouseAnnotationTarget(
            ClickHouseQuery(ref_id=ref_id, raw_sql=raw_sql.strip())
        )

    def build(self) -> ClickHouseAnnotationTarget:
        return self._internal


def register() -> None:
    """Make ``Dashboard.from_json`` decode ClickHouse targets as :class:`ClickHouseQuery`."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins

    register_default_plugins()
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_TYPE, from_json_hook=ClickHouseQuery.from_json)
    )

"""``koxpulse report``: the whole picture in one HTML file, for people without Grafana."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from koxpulse.settings import Settings


@dataclass(frozen=True, slots=True)
class ReportSummary:
    charts: int
    alerts: int
    dead_letters: int
    size_bytes: int


def write_report(settings: Settings, out: Path, *, since: str | None = None) -> ReportSummary:
    from koxpulse.report.data import load
    from koxpulse.report.html import render
    from koxpulse.runner import clickhouse_target
    from sinks.clickhouse import connect

    target = clickhouse_target(settings)
    client = connect(target)
    try:
        data = load(client, target.database, since)
    finally:
        client.close()
    text = render(data)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    charts = (1 if data.overview is not None else 0) + sum(len(b.charts) for b in data.regions)
    return ReportSummary(
        charts=charts,
        alerts=len(data.alerts),
        dead_letters=sum(d["count"] for d in data.dead_letters),
        size_bytes=len(text.encode("utf-8")),
    )

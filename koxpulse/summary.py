"""The end-of-run summary, written for a regional manager rather than an engineer."""

from __future__ import annotations

import shlex
from typing import TextIO

from clickhouse_connect.driver.client import Client

from koxpulse.runner import RunResult, clickhouse_target
from koxpulse.settings import Settings
from sinks.clickhouse import connect
from sinks.tables import quote_ident


def _rows(client: Client, sql: str) -> list[tuple]:
    return [tuple(r) for r in client.query(sql, settings={"readonly": 1}).result_rows]


def print_summary(settings: Settings, result: RunResult | None, out: TextIO | None = None) -> None:
    import sys

    out = out or sys.stdout
    target = clickhouse_target(settings)
    db = quote_ident(target.database)
    client = connect(target)
    try:
        w = out.write
        w("\n== koxpulse summary ==\n")
        if result is not None:
            w(
                f"Read {result.messages:,} messages in {result.seconds:.1f} s "
                f"({result.messages / max(result.seconds, 1e-9):,.0f}/s): "
                f"{result.ok:,} events counted, {result.duplicates:,} duplicates ignored, "
                f"{result.invalid:,} invalid (dead letters), {result.late:,} late.\n"
            )
        (kpi_rows, first, last, scans, redemptions, orders, revenue) = _rows(
            client,
            f"SELECT count(), min(window_start), max(window_start), sum(scans), "
            f"sum(redemptions), sum(orders), round(sum(revenue), 2) FROM {db}.kpi_minute FINAL",
        )[0]
        w(
            f"KPI rows: {kpi_rows:,} (minute x region x channel) from {first} to {last} UTC; "
            f"{scans:,} scans, {redemptions:,} redemptions, {orders:,} orders, "
            f"revenue CNY {revenue:,.2f}.\n"
        )
        dead = _rows(
            client,
            f"SELECT reason_code, count() AS n, any(reason) FROM {db}.dead_letters FINAL "
            f"GROUP BY reason_code ORDER BY n DESC, reason_code",
        )
        total_dead = sum(r[1] for r in dead)
        w(f"Dead letters: {total_dead:,}\n")
        for code, n, example in dead:
            w(f"  {n:>7,}  {code:<14} e.g. {example}\n")
        (late,) = _rows(client, f"SELECT count() FROM {db}.late_events FINAL")[0]
        w(f"Late events (after their window closed): {late:,}\n")

        w("\nRegions by scans (redemption rate = redemptions / scans):\n")
        regions = _rows(
            client,
            f"SELECT region, sum(scans) AS s, sum(redemptions) AS r, sum(orders) AS o, "
            f"sum(repeat_buyers) / nullIf(sum(buyers), 0) AS rep "
            f"FROM {db}.kpi_minute FINAL GROUP BY region ORDER BY s DESC, region",
        )
        w(f"  {'region':<10}{'scans':>10}{'redeemed':>10}{'rate':>8}{'orders':>9}{'repeat':>8}\n")
        for region, s, r, o, rep in regions:
            rate = f"{r / s:.1%}" if s else "-"
            reps = f"{rep:.1%}" if rep is not None else "-"
            w(f"  {region:<10}{s:>10,}{r:>10,}{rate:>8}{o:>9,}{reps:>8}\n")
        by_rate = sorted((r for r in regions if r[1]), key=lambda r: (-(r[2] / r[1]), r[0]))
        if by_rate:
            w(
                "Regions by redemption rate: "
                + ", ".join(f"{r[0]} {r[2] / r[1]:.1%}" for r in by_rate)
                + "\n"
            )

        alerts = _rows(
            client,
            f"SELECT kind, count(), countIf(status = 'firing') FROM {db}.alerts FINAL "
            f"GROUP BY kind ORDER BY kind",
        )
        if alerts:
            w("\nAlerts by kind (total / still firing):\n")
            for kind, n, firing in alerts:
                w(f"  {kind:<26}{n:>5}{firing:>5}\n")
        else:
            w("\nAlerts: none recorded.\n")

        dsn = shlex.quote(settings.clickhouse)
        d = target.database
        w("\nLook further:\n")
        for sql in (
            "SELECT region, channel, sum(scans), sum(redemptions), "
            f"round(sum(redemptions)/sum(scans), 3) AS rate FROM {d}.kpi_minute FINAL "
            "GROUP BY region, channel ORDER BY rate",
            "SELECT toStartOfHour(window_start) AS hour, sum(scans), sum(orders) "
            f"FROM {d}.kpi_minute FINAL GROUP BY hour ORDER BY hour",
            f"SELECT reason, count() FROM {d}.dead_letters FINAL GROUP BY reason "
            "ORDER BY count() DESC",
            f"SELECT kind, severity, region, entity_id, summary FROM {d}.alerts FINAL "
            "ORDER BY starts_at",
        ):
            w(f"  koxpulse query --clickhouse {dsn} {shlex.quote(sql)}\n")
    finally:
        client.close()

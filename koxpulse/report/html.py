"""Render :class:`ReportData` as one HTML file with everything inlined.

uPlot (MIT, vendored in ``assets/`` with its licence) draws the charts from JSON
embedded in the page, so the file opens from a mail attachment or a phone's
downloads with no network. Times are China time (UTC+8, no daylight saving),
the clock the regional managers work by; the footer says so.
"""

from __future__ import annotations

import html
import json
from datetime import timedelta, timezone
from importlib import resources
from typing import Any

from koxpulse import __version__
from koxpulse.explain import DIMENSIONS, Explanation
from koxpulse.report.data import ReportData, Series
from koxpulse.timeutil import ms_to_datetime

CHINA = timezone(timedelta(hours=8), "UTC+8")


def _asset(name: str) -> str:
    return (resources.files("koxpulse.report") / "assets" / name).read_text(encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return ms_to_datetime(ms).astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def _count(v: float | int | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _rate(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _cny(v: float | None) -> str:
    return "–" if v is None else f"¥{v:,.0f}"


def _script_json(payload: Any) -> str:
    """JSON safe inside <script>: no '</' can close the element early."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _chart_payload(s: Series) -> dict[str, Any]:
    return {"title": s.title, "unit": s.unit, "x": s.x, "y": s.y, "markers": s.markers}


def render(data: ReportData, *, title: str = "koxpulse report") -> str:
    charts: dict[str, dict[str, Any]] = {}
    body: list[str] = []
    w = body.append
    w("<header>")
    w(f"<h1>{_e(title)}</h1>")
    if data.empty:
        w("<p>No KPI data in ClickHouse yet: run <code>koxpulse run</code> first.</p></header>")
    else:
        w(
            f'<p class="muted">{_when(data.start_ms)} – {_when(data.end_ms)} (China time, '
            f"UTC+8) · database {_e(data.database)} · charts in {data.bucket_min}-minute "
            "steps</p>"
        )
        t = data.totals
        w('<div class="tiles">')
        for label, value in (
            ("Scans", _count(t["scans"])),
            ("Redemptions (核销)", _count(t["redemptions"])),
            ("Redemption rate", _rate(t["redemption_rate"])),
            ("Orders", _count(t["orders"])),
            ("Revenue", _cny(t["revenue"])),
            ("Repurchase rate", _rate(t["repurchase_rate"])),
            ("Alerts", _count(len(data.alerts))),
        ):
            w(f'<div class="tile"><span class="muted">{_e(label)}</span><b>{value}</b></div>')
        w("</div></header><main>")
        if data.overview is not None:
            charts["overview"] = _chart_payload(data.overview)
            w('<h2>Overview</h2><div class="card">')
            w(f"<h3>{_e(data.overview.title)}</h3>")
            w('<div class="chart" data-chart="overview"></div>')
            w(_marker_note())
            w("</div>")
        w("<h2>Regions and channels</h2>")
        for block in data.regions:
            w(f'<section class="card" id="region-{_e(block.region)}">')
            w(f"<h3>{_e(block.region)}</h3>")
            w('<div class="grid">')
            for s in block.charts:
                charts[s.key] = _chart_payload(s)
                w(
                    f'<div><div class="muted">{_e(s.title)}</div>'
                    f'<div class="chart" data-chart="{_e(s.key)}"></div></div>'
                )
            w("</div>")
            w('<div class="scroll"><table><thead><tr><th>channel</th>')
            for col in ("scans", "redeemed", "rate", "orders", "revenue", "repeat", "alerts"):
                w(f'<th class="num">{col}</th>')
            w("</tr></thead><tbody>")
            for row in block.channels:
                w(
                    f"<tr><td>{_e(row['channel'])}</td>"
                    f'<td class="num">{_count(row["scans"])}</td>'
                    f'<td class="num">{_count(row["redemptions"])}</td>'
                    f'<td class="num">{_rate(row["redemption_rate"])}</td>'
                    f'<td class="num">{_count(row["orders"])}</td>'
                    f'<td class="num">{_cny(row["revenue"])}</td>'
                    f'<td class="num">{_rate(row["repurchase_rate"])}</td>'
                    f'<td class="num">{row["alerts"]}</td></tr>'
                )
            w("</tbody></table></div></section>")
        w(f"<h2>Alerts ({len(data.alerts)})</h2>")
        if not data.alerts:
            w("<p>No alerts in this period.</p>")
        for a in data.alerts:
            w(_alert_html(a, data.drilldowns.get(a["alert_id"])))
    w("<h2>Rejected and late messages</h2>")
    total_dead = sum(d["count"] for d in data.dead_letters)
    w(
        f"<p>{total_dead:,} messages were rejected (dead letters, each kept with its raw "
        f"text in <code>dead_letters</code>) and {data.late_events:,} valid events arrived "
        "after their window closed (<code>late_events</code>).</p>"
    )
    if data.dead_letters:
        w('<div class="card scroll"><table><thead><tr><th>reason</th>')
        w('<th class="num">messages</th><th>example</th></tr></thead><tbody>')
        for d in data.dead_letters:
            w(
                f'<tr><td>{_e(d["reason_code"])}</td><td class="num">{d["count"]:,}</td>'
                f"<td>{_e(d['example'])}</td></tr>"
            )
        w("</tbody></table></div>")
    w("</main>")
    w(
        f'<footer class="muted">koxpulse {_e(__version__)} · figures are exact '
        "(ClickHouse FINAL) · times in China time (UTC+8) · charts drawn with uPlot "
        "(MIT licence, embedded)</footer>"
    )
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_asset('uPlot.min.css')}</style>",
        f"<style>{_asset('report.css')}</style>",
        "</head><body>",
        *body,
        f'<script type="application/json" id="report-data">{_script_json({"charts": charts})}'
        "</script>",
        f"<script>{_asset('uPlot.iife.min.js')}</script>",
        f"<script>{_asset('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(page) + "\n"


def _marker_note() -> str:
    return (
        '<div class="legend-note">Dashed lines mark where an alert started: red critical, '
        "amber warning, grey info.</div>"
    )


def _alert_html(a: dict[str, Any], ex: Explanation | None) -> str:
    where = "/".join(x for x in (a["region"], a["channel"]) if x) or "–"
    out = [
        f'<article class="alert {_e(a["severity"])}" id="alert-{_e(a["alert_id"])}">',
        f'<span class="sev sev-{_e(a["severity"])}">{_e(a["severity"])}</span> '
        f"<b>{_e(a['kind'])}</b> · {_e(where)} · {_e(a['entity_type'])} "
        f"<code>{_e(a['entity_id'])}</code>",
        f"<p>{_e(a['summary'])}</p>",
        f'<div class="muted">{_when(a["starts_ms"])} → '
        f"{_when(a['ends_ms']) if a['ends_ms'] is not None else 'still firing'} · "
        f"{_e(a['alert_id'])}</div>",
        "<details><summary>Drill-down</summary>",
    ]
    if ex is not None and ex.drillable:
        out.append(f'<p class="lead">{_e(ex.verdict())}</p>')
        out.append(
            f'<p class="muted">{_e(ex.metric)} from {_when(ex.start_ms)} to {_when(ex.end_ms)} '
            f"against the same hours on up to {ex.baseline_days} previous days.</p>"
        )
        rate = ex.metric == "redemption_rate"
        for d in DIMENSIONS:
            rows = [c for c in ex.contributions if c.dimension == d]
            if not rows:
                continue
            star = " ← explains most" if d == ex.top_dimension else ""
            out.append(f'<div class="dim scroll"><b>{_e(d)}{star}</b><table><thead><tr>')
            out.append(
                '<th>value</th><th class="num">now</th><th class="num">usual</th>'
                '<th class="num">change</th><th class="num">share of change</th>'
                '<th class="num">usual share</th></tr></thead><tbody>'
            )
            for c in rows:
                fmt = _rate if rate else (lambda v: "–" if v is None else f"{v:,.1f}")
                out.append(
                    f'<tr><td>{_e(c.value)}</td><td class="num">{fmt(c.now)}</td>'
                    f'<td class="num">{fmt(c.usual)}</td><td class="num">{c.change:+,.1f}</td>'
                    f'<td class="num">{_rate(c.share_of_change)}</td>'
                    f'<td class="num">{_rate(c.usual_share)}</td></tr>'
                )
            out.append("</tbody></table></div>")
    else:
        out.append('<dl class="kv">')
        for k, v in sorted(a["details"].items()):
            shown = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            out.append(f"<dt>{_e(k)}</dt><dd>{_e(shown)}</dd>")
        out.append("</dl>")
    out.append("</details></article>")
    return "\n".join(out)

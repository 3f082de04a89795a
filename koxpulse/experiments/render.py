"""The readout as text for a terminal, JSON for programs, or one self-contained HTML page."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from datetime import UTC, datetime
from typing import Any

from .report import Comparison, Estimate, Report, amount, unit


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: say null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def to_dict(report: Report) -> dict[str, Any]:
    out = dataclasses.asdict(report)
    out["first_exposure"] = _iso(out.pop("first_exposure_ms"))
    out["last_exposure"] = _iso(out.pop("last_exposure_ms"))
    out["design"]["split"] = dict(report.design.split) or "equal"
    for comp, src in zip(out["comparisons"], report.comparisons, strict=True):
        comp["headline"] = "cuped" if src.cuped is not None else "plain"
    return _clean(out)


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), ensure_ascii=False, indent=2) + "\n"


def _row(label: str, c: Comparison, e: Estimate) -> list[str]:
    a, r = e.absolute, e.relative
    return [
        f"{c.label} ({label})",
        c.variant,
        f"{c.control_users:,} / {c.treatment_users:,}",
        amount(c.kind, e.control) + unit(c.kind),
        amount(c.kind, e.treatment) + unit(c.kind),
        f"{amount(c.kind, a.estimate, signed=True)} "
        f"[{amount(c.kind, a.low)}, {amount(c.kind, a.high)}]",
        f"{r.estimate:+.1%} [{r.low:+.1%}, {r.high:+.1%}]" if math.isfinite(r.estimate) else "-",
        f"{e.p:.4g}",
    ]


_HEAD = ["metric", "variant", "users c / v", "control", "variant", "lift [CI]", "relative", "p"]


def _rows(report: Report) -> list[list[str]]:
    rows = []
    for c in report.comparisons:
        rows.append(_row("plain", c, c.plain))
        if c.cuped is not None:
            rows.append(_row(f"CUPED -{c.variance_reduction or 0:.0%} var", c, c.cuped))
        s = c.sequential
        rows.append(
            [
                f"{c.label} (always valid)",
                c.variant,
                "",
                "",
                "",
                f"{amount(c.kind, s.estimate, signed=True)} "
                f"[{amount(c.kind, s.low)}, {amount(c.kind, s.high)}]",
                "",
                f"{c.sequential_p:.4g}",
            ]
        )
    return rows


def _header_lines(report: Report) -> list[str]:
    d = report.design
    lines = [f"A/B readout: campaign {report.campaign}"]
    if report.filters:
        lines.append("segment: " + ", ".join(f"{k}={v}" for k, v in report.filters.items()))
    first, last = _iso(report.first_exposure_ms), _iso(report.last_exposure_ms)
    if first:
        lines.append(f"exposures from {first} to {last} (UTC)")
    lines.append(
        "users analysed: "
        + ", ".join(f"{v} {n:,}" for v, n in report.users.items())
        + f" (exposed {sum(report.exposed.values()):,})"
    )
    multi = sum(report.multi_variant.values())
    lines.append(f"users seen in several variants, left out: {multi:,}")
    flagged = sum(report.fraud_flagged.values())
    if d.exclude_fraud:
        lines.append(f"users flagged by fraud alerts (user or device), left out: {flagged:,}")
    else:
        lines.append(
            f"users flagged by fraud alerts, kept: {flagged:,} (--exclude-fraud leaves them out)"
        )
    lines.append(report.srm_text[0].upper() + report.srm_text[1:] + ".")
    return lines


def to_table(report: Report) -> str:
    lines = _header_lines(report)
    rows = _rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEAD)]
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(_HEAD, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    lines += [f"- {c.verdict}" for c in report.comparisons]
    d = report.design
    lines.append("")
    lines.append(
        f"{round(100 * (1 - d.alpha))} % intervals: Welch t (delta method for ratios); "
        "relative lift by the delta method; always-valid: mixture SPRT, normal mixture "
        f"tuned for {d.planned_users:,} users."
    )
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1d2433}
h1{font-size:1.4rem}table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #d0d5dd;padding:.3rem .6rem;text-align:left;font-size:.9rem}
th{background:#f2f4f7}.bad{color:#b42318;font-weight:600}.ok{color:#067647}
li{margin:.4rem 0}.note{color:#667085;font-size:.85rem}
"""


def to_html(report: Report) -> str:
    """One page with inline CSS and no scripts or external links: mail it, archive it."""
    esc = html.escape
    head = _header_lines(report)
    srm_class = "bad" if report.srm.flagged else "ok"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>A/B readout {esc(report.campaign)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(head[0])}</h1>",
        "<ul>",
        *(f"<li>{esc(line)}</li>" for line in head[1:-1]),
        f'<li class="{srm_class}">{esc(head[-1])}</li>',
        "</ul>",
        "<h2>Verdicts</h2><ul>",
        *(
            f'<li class="{"ok" if c.final else ""}">{esc(c.verdict)}</li>'
            for c in report.comparisons
        ),
        "</ul><h2>Numbers</h2><table><tr>",
        *(f"<th>{esc(h)}</th>" for h in _HEAD),
        "</tr>",
    ]
    for r in _rows(report):
        parts.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>")
    parts.append("</table>")
    parts.append(
        '<p class="note">Intervals at '
        f"{round(100 * (1 - report.design.alpha))} %: Welch t, delta method for ratio "
        "metrics and relative lifts; CUPED uses each user's activity before first exposure; "
        "always-valid results come from a mixture SPRT and stay valid however often the "
        "report is read.</p></body></html>"
    )
    return "\n".join(parts) + "\n"


RENDERERS = {"table": to_table, "json": to_json, "html": to_html}

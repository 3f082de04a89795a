"""Dashboards, drill-down and report against a labelled replay in real chDB.

One labelled stream (40 h, seed 3: the alert replay test's, whose incidents are all
detected) is simulated and replayed once for the module. Then:

- every SQL query of every panel, variable and annotation is expanded the way Grafana
  and the ClickHouse plugin do and run; its columns must be the ones the panel reads,
  and where an exact answer exists (totals, counts, the injected incidents' entities)
  the rows must give it;
- ``koxpulse explain`` must name the outlet the simulator broke, and the dashboard's
  drill-down panel must return exactly the rows ``explain`` computed;
- ``koxpulse report`` must open in headless Chromium with every chart drawn, no console
  error and no network request; the screenshot lands in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from dashboards.build import generate
from dashboards.catalog import SqlExpectation
from dashboards.macros import QueryContext, Variable, expand
from koxpulse.simulator import companion_paths, simulate
from tests.browser import Browser, chromium_binary
from tests.conftest import ROOT, run_cli

START = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)  # the simulator's default start
END = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)  # + 40 h
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("dash")
    stream = d / "labelled.jsonl.gz"
    simulate(stream, hours=40, seed=3, scale=0.3, incidents=True)
    dsn = f"chdb://{d / 'ch'}"
    proc = run_cli("run", "--input", str(stream), "--clickhouse", dsn)
    assert proc.returncode == 0, proc.stderr
    labels = [json.loads(line) for line in companion_paths(stream).labels.read_text().splitlines()]
    return {"dir": d, "chdb": d / "ch", "dsn": dsn, "labels": labels}


def run_sql(replay: dict[str, Any], sqls: list[str]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.chdb_batch", str(replay["chdb"])],
        input=json.dumps(sqls),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one(replay: dict[str, Any], sql: str) -> list[list[Any]]:
    (res,) = run_sql(replay, [sql])
    assert "error" not in res, res
    return res["rows"]


REGIONS = ("CN-BJ", "CN-GD", "CN-HB", "CN-JS", "CN-SC", "CN-SD", "CN-SH", "CN-ZJ")
# "All" as Grafana sends it: the plugin drops $__conditionalAll conditions, and a plain
# ${var:sqlstring} expands to every option the variable's query returned
ALL = {
    "region": Variable(("$__all",), REGIONS),
    "channel": Variable(("$__all",), ("community", "ecommerce", "offline")),
    "campaign": Variable(("$__all",), ("CMP-2611-LUCKYDRAW", "CMP-2611-REDPACK")),
}


def context(start: datetime = START, end: datetime = END, **chosen: str) -> QueryContext:
    variables = {
        **ALL,
        "metric": Variable(("redemption_rate",)),
        "baseline_days": Variable(("7",)),
    }
    for name, value in chosen.items():
        variables[name] = Variable((value,))
    return QueryContext(start, end, interval_s=600, variables=variables)


def run_catalog(replay: dict[str, Any], ctx: QueryContext) -> dict[tuple[str, str], Any]:
    catalog = generate().catalog.sql
    results = run_sql(replay, [expand(e.sql, ctx) for e in catalog])
    out: dict[tuple[str, str], Any] = {}
    for e, res in zip(catalog, results, strict=True):
        assert "error" not in res, (e.dashboard, e.panel, res["error"])
        check_shape(e, res)
        out[(e.dashboard, e.panel)] = res
    return out


def check_shape(e: SqlExpectation, res: dict[str, Any]) -> None:
    assert tuple(res["columns"]) == e.columns, (e.panel, res["columns"])
    if e.time_series:
        assert res["columns"][0] == "time" and res["types"][0].startswith("DateTime")
        times = [r[0] for r in res["rows"]]
        assert times == sorted(times), e.panel


def column(res: dict[str, Any], name: str) -> list[Any]:
    i = res["columns"].index(name)
    return [r[i] for r in res["rows"]]


REGIONAL = "koxpulse-regional-kpis"
ALERTS = "koxpulse-alerts-fraud"


def test_every_panel_query_runs_with_all_selected_and_gives_exact_figures(replay) -> None:
    got = run_catalog(replay, context())
    may_be_empty = {(ALERTS, "Open alerts")}  # every incident has resolved by the end
    for key, res in got.items():
        if key not in may_be_empty:
            assert res["rows"], f"{key}: no rows"

    (scans, reds, orders, revenue, n_alerts, firing) = one(
        replay,
        "SELECT (SELECT sum(scans) FROM koxpulse.kpi_minute FINAL), "
        "(SELECT sum(redemptions) FROM koxpulse.kpi_minute FINAL), "
        "(SELECT sum(orders) FROM koxpulse.kpi_minute FINAL), "
        "(SELECT sum(revenue) FROM koxpulse.kpi_minute FINAL), "
        "(SELECT count() FROM koxpulse.alerts FINAL), "
        "(SELECT countIf(status = 'firing') FROM koxpulse.alerts FINAL)",
    )[0]
    assert scans > 50_000 and n_alerts == 10
    assert sum(column(got[(REGIONAL, "Scans")], "scans")) == scans
    assert sum(column(got[(REGIONAL, "Orders")], "orders")) == orders
    rev = got[(REGIONAL, "Revenue (CNY)")]
    assert math.isclose(sum(column(rev, "revenue")), revenue, abs_tol=0.01 * len(rev["rows"]))
    assert got[(REGIONAL, "Scan → redemption → order")]["rows"] == [[scans, reds, orders]]
    assert len(got[(REGIONAL, "annotation Alerts")]["rows"]) == n_alerts
    assert len(got[(ALERTS, "Open alerts")]["rows"]) == firing
    assert sum(column(got[(ALERTS, "Alerts raised by kind")], "alerts")) == n_alerts
    for name, var in ALL.items():  # the options Grafana would offer are the ones used here
        assert tuple(column(got[(REGIONAL, f"variable {name}")], "value")) == var.options

    # "today" is the China-time day of the range's end: 2026-11-17 00:00 +08:00
    (today_scans, pairs) = one(
        replay,
        "SELECT sum(scans), uniqExact(region, channel) FROM koxpulse.kpi_minute FINAL "
        "WHERE window_start >= '2026-11-16 16:00:00' AND window_start < '2026-11-17 08:00:00'",
    )[0]
    week = got[(REGIONAL, "Today vs the same weekday last week")]
    assert len(week["rows"]) == pairs
    assert sum(column(week, "scans_today")) == today_scans
    assert set(column(week, "scans_last_week")) == {0}  # the stream is 40 hours long
    assert set(column(week, "scans_change")) == {None}

    # the injected incidents' entities lead the entity tables
    labels = {(lb["kind"], lb["entity_type"]): lb["entity_id"] for lb in replay["labels"]}
    titles = {"outlet": "Top outlets", "device": "Top devices", "batch": "Top batches"}
    titles["user"] = "Top users"
    top = {t: column(got[(ALERTS, title)], t) for t, title in titles.items()}
    assert top["batch"] == [labels[("cross_region_scan", "batch")]]
    assert top["device"] == [labels[("reward_farming", "device")]]
    assert set(top["user"]) == {
        labels[("reward_farming", "user")],
        labels[("impossible_travel", "user")],
    }
    assert set(top["outlet"]) == {
        labels[("outlet_self_redemption", "outlet")],
        labels[("high_scan_low_redemption", "outlet")],
    }
    cross = got[(ALERTS, "Cross-region scans (串货): authorised region → scanned region")]
    (bj_sh,) = [r for r in cross["rows"] if r[0] == "CN-BJ" and r[1] == "CN-SH"]
    assert bj_sh[3] >= 15 and labels[("cross_region_scan", "batch")] in bj_sh[5]


def test_panel_queries_follow_the_variables(replay) -> None:
    got = run_catalog(replay, context(region="CN-GD", channel="offline"))
    (gd_scans, gd_orders) = one(
        replay,
        "SELECT sum(scans), sum(orders) FROM koxpulse.kpi_minute FINAL "
        "WHERE region = 'CN-GD' AND channel = 'offline'",
    )[0]
    scans = got[(REGIONAL, "Scans")]
    assert set(column(scans, "region")) == {"CN-GD"}
    assert sum(column(scans, "scans")) == gd_scans
    assert got[(REGIONAL, "Scan → redemption → order")]["rows"][0][2] == gd_orders
    assert set(column(got[(REGIONAL, "Repurchase rate")], "region")) == {"CN-GD"}
    week = got[(REGIONAL, "Today vs the same weekday last week")]
    assert [r[:2] for r in week["rows"]] == [["CN-GD", "offline"]]
    anno = got[(REGIONAL, "annotation Alerts")]
    assert len(anno["rows"]) == 1 and "GD-OFF-0051" in anno["rows"][0][2]

    campaign = run_catalog(replay, context(campaign="CMP-2611-REDPACK"))
    (redpack,) = one(
        replay,
        "SELECT count() FROM koxpulse.events FINAL "
        "WHERE type = 'scan' AND campaign_id = 'CMP-2611-REDPACK'",
    )[0]
    assert sum(column(campaign[(REGIONAL, "Scans")], "scans")) == redpack


def hslr_outlet_alert(replay) -> tuple[str, dict[str, Any]]:
    (label,) = [
        lb
        for lb in replay["labels"]
        if lb["kind"] == "high_scan_low_redemption" and lb["entity_type"] == "outlet"
    ]
    rows = one(
        replay,
        "SELECT alert_id FROM koxpulse.alerts FINAL WHERE kind = 'high_scan_low_redemption' "
        f"AND region = '{label['region']}' AND channel = '{label['channel']}'",
    )
    assert len(rows) == 1
    return rows[0][0], label


def explain_json(replay, alert_id: str) -> dict[str, Any]:
    proc = run_cli("explain", alert_id, "--clickhouse", replay["dsn"], "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_explain_names_the_outlet_the_simulator_broke(replay) -> None:
    alert_id, label = hslr_outlet_alert(replay)
    ex = explain_json(replay, alert_id)
    assert ex["metric"] == "redemption_rate"
    assert ex["top_dimension"] == "outlet"
    outlets = [c for c in ex["contributions"] if c["dimension"] == "outlet"]
    assert outlets[0]["value"] == label["entity_id"] == "GD-OFF-0051"
    assert outlets[0]["change"] < 0 and outlets[0]["excess"] > 0.3
    assert ex["verdict"].startswith("Outlet explains most of the move: GD-OFF-0051 carries")
    assert ex["window"] == ["2026-11-17T03:30:00.000Z", "2026-11-17T04:30:00.000Z"]
    assert {c["dimension"] for c in ex["contributions"]} == {"outlet", "sku", "campaign", "device"}

    table = run_cli("explain", alert_id, "--clickhouse", replay["dsn"])
    assert table.returncode == 0, table.stderr
    assert "outlet <- explains most" in table.stdout and "GD-OFF-0051" in table.stdout


def test_the_drill_down_panel_returns_what_explain_computed(replay) -> None:
    """Same SQL, two bindings: the panel over the alert's window equals `koxpulse explain`."""
    alert_id, label = hslr_outlet_alert(replay)
    ex = explain_json(replay, alert_id)
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in ex["window"])
    (panel,) = [e for e in generate().catalog.sql if e.panel == "What drove the change"]
    ctx = context(start, end, region=label["region"], channel=label["channel"])
    (res,) = run_sql(replay, [expand(panel.sql, ctx)])
    assert "error" not in res, res
    check_shape(panel, res)
    rows = [dict(zip(res["columns"], r, strict=True)) for r in res["rows"]]
    assert len(rows) == len(ex["contributions"])
    for got, want in zip(rows, ex["contributions"], strict=True):
        assert (got["dimension"], got["value"]) == (want["dimension"], want["value"])
        for col in ("now", "usual", "change", "share_of_change", "usual_share", "excess"):
            g, w = got[col], want[col]
            if g is None or w is None or (isinstance(g, float) and math.isnan(g)):
                assert w is None or (isinstance(g, float) and math.isnan(g)), (col, got, want)
            else:
                assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9), (col, got, want)


def test_explain_calls_a_region_wide_move_broad_and_shows_fraud_evidence(replay) -> None:
    (zj,) = one(
        replay,
        "SELECT alert_id FROM koxpulse.alerts FINAL "
        "WHERE kind = 'high_scan_low_redemption' AND region = 'CN-ZJ'",
    )
    ex = explain_json(replay, zj[0])
    assert ex["top_dimension"] is None
    assert "the move is broad across CN-ZJ/offline" in ex["verdict"]

    (batch,) = one(
        replay, "SELECT alert_id FROM koxpulse.alerts FINAL WHERE kind = 'cross_region_scan'"
    )
    ex = explain_json(replay, batch[0])
    assert ex["metric"] is None and ex["contributions"] == []
    assert ex["details"]["batch_id"] == "B00701"
    assert ex["details"]["authorised_regions"] == ["CN-BJ"]

    proc = run_cli("explain", "no-such-alert", "--clickhouse", replay["dsn"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "koxpulse explain: error: no alert 'no-such-alert' in koxpulse.alerts"
    )


def test_report_opens_in_headless_chromium_with_every_chart_drawn(replay) -> None:
    out = replay["dir"] / "report.html"
    proc = run_cli("report", "--out", str(out), "--clickhouse", replay["dsn"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}: 25 charts, 10 alerts, ")
    html = out.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<script src=" not in html and "<link " not in html  # everything inlined
    for label in replay["labels"]:
        if label["entity_id"] not in ("GD-OFF-0051",):  # every alert's entity is listed
            assert label["entity_id"] in html
    assert "Outlet explains most of the move: GD-OFF-0051" in html

    binary = chromium_binary()
    if binary is None:
        pytest.fail("chromium is not installed: run `make tools` (Debian package chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with Browser(binary) as browser:
        session = browser.open(out.as_uri())
        charts = browser.evaluate(session, "window.koxpulseReport.charts")
        inked = browser.evaluate(session, "window.koxpulseReport.inked()")
        canvases = browser.evaluate(session, "document.querySelectorAll('.chart canvas').length")
        overflow = browser.evaluate(
            session, "document.documentElement.scrollWidth - window.innerWidth"
        )
        browser.screenshot(session, ARTIFACTS / "report.png")
        page = browser.report(session)
    assert charts == 25 and inked == 25 and canvases == 25
    assert overflow <= 0, "the page scrolls sideways on a phone"
    assert page.console_errors == [] and page.exceptions == []
    assert page.requests == [out.as_uri()]  # nothing but the file itself: no network
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_report_since_and_misuse(replay) -> None:
    out = replay["dir"] / "recent.html"
    proc = run_cli("report", "--out", str(out), "--clickhouse", replay["dsn"], "--since", "6h")
    assert proc.returncode == 0, proc.stderr
    # the last 6 hours of data (from 02:00Z) hold four alerts: 高扫码低核销 in CN-ZJ and at
    # GD-OFF-0051, the CN-SC orders outage and the CN-JS scans spike
    assert ", 4 alerts, " in proc.stdout
    html = out.read_text(encoding="utf-8")
    assert html.count('<article class="alert') == 4
    assert "GD-OFF-0051" in html and "B00701" not in html
    for args, message in (
        (("--since", "yesterday"), "--since 'yesterday': give a duration (36h, 7d)"),
        (("--since", "2026-11-17T00:00:00"), "needs a UTC offset"),
    ):
        proc = run_cli("report", "--out", str(out), "--clickhouse", replay["dsn"], *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = run_cli("report", "--out", str(replay["dir"] / "r.txt"), "--clickhouse", replay["dsn"])
    assert proc.returncode == 2 and "must end in .html" in proc.stderr

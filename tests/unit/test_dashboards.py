"""Dashboards as code: committed JSON equals the definitions, validates against the SDK's
models, every query is registered, every PromQL expression parses and names real metrics."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.build import JSON_DIR, generate, stale, validate
from dashboards.clickhouse import DATASOURCE_UID, PLUGIN_TYPE, PROMETHEUS_UID
from dashboards.metric_names import PLANNED, exported_sample_names, planned_sample_names

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in JSON_DIR.glob("*.json")}


def panels(doc: dict) -> list[dict]:
    return [p for p in doc["panels"] if p.get("type") != "row"]


def test_committed_json_equals_what_the_definitions_generate() -> None:
    assert stale() == [], "run `koxpulse dashboards build` and commit dashboards/json"
    assert sorted(committed()) == [
        "alerts-fraud.json",
        "pipeline-health.json",
        "regional-kpis.json",
    ]


def test_a_changed_committed_file_is_reported_stale(tmp_path: Path) -> None:
    for name, text in generate().files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert stale(tmp_path) == []
    path = tmp_path / "regional-kpis.json"
    path.write_text(path.read_text().replace('"Scans"', '"Scans!"'), encoding="utf-8")
    (tmp_path / "old.json").write_text("{}")
    assert stale(tmp_path) == ["regional-kpis.json", "old.json"]


@pytest.mark.parametrize(
    "name", ["alerts-fraud.json", "pipeline-health.json", "regional-kpis.json"]
)
def test_committed_json_validates_against_the_sdk_models(name: str) -> None:
    validate(committed()[name])


def test_validation_rejects_what_the_schema_does_not_know() -> None:
    doc = committed()["regional-kpis.json"]
    bad = copy.deepcopy(doc)
    bad["panels"][0]["gridPos"]["width"] = 12  # gridPos has "w", not "width"
    with pytest.raises(ValueError, match="does not round-trip"):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["panels"][0]["targets"][0]["rawSQL"] = "SELECT 1"  # the plugin's key is rawSql
    with pytest.raises(ValueError, match="does not round-trip"):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["annotations"]["list"][0]["target"]["editorType"] = "builder"
    with pytest.raises(ValueError, match="only SQL-editor queries"):
        validate(bad)


def test_dashboards_have_stable_uids_descriptions_and_datasources() -> None:
    docs = committed()
    assert {d["uid"] for d in docs.values()} == {
        "koxpulse-regional-kpis",
        "koxpulse-alerts-fraud",
        "koxpulse-pipeline-health",
    }
    for doc in docs.values():
        titles = [p["title"] for p in panels(doc)]
        assert len(titles) == len(set(titles)), doc["uid"]
        for p in panels(doc):
            assert len(p.get("description", "")) >= 30, (doc["uid"], p["title"])
            ds = p["datasource"]
            assert (ds["type"], ds["uid"]) in (
                (PLUGIN_TYPE, DATASOURCE_UID),
                ("prometheus", PROMETHEUS_UID),
            )
            for target in p["targets"]:
                assert target["datasource"] == ds


def test_regional_dashboard_has_the_asked_for_variables_panels_and_annotations() -> None:
    doc = committed()["regional-kpis.json"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["region", "channel", "campaign", "metric", "baseline_days"]
    types = {p["title"]: p["type"] for p in panels(doc)}
    assert types == {
        "Scans": "timeseries",
        "Redemption rate (核销率)": "timeseries",
        "Orders": "timeseries",
        "Revenue (CNY)": "timeseries",
        "Repurchase rate": "timeseries",
        "Scan → redemption → order": "bargauge",
        "Today vs the same weekday last week": "table",
        "What drove the change": "table",
    }
    (anno,) = doc["annotations"]["list"]
    assert anno["datasource"]["type"] == PLUGIN_TYPE
    assert "FROM koxpulse.alerts FINAL" in anno["target"]["rawSql"]


def test_the_drill_down_panel_runs_the_explain_query() -> None:
    from koxpulse.explain import GRAFANA_BINDINGS, contribution_sql

    doc = committed()["regional-kpis.json"]
    (panel,) = [p for p in panels(doc) if p["title"] == "What drove the change"]
    sql = contribution_sql("koxpulse").strip()
    for name, bound in GRAFANA_BINDINGS.items():
        sql = re.sub(r"\{" + name + r":[^{}]*\}", lambda _m, b=bound: b, sql)
    assert panel["targets"][0]["rawSql"] == sql


def _sql_and_promql(doc: dict) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    sql, prom = set(), set()
    uid = doc["uid"]
    for p in panels(doc):
        for t in p["targets"]:
            if "rawSql" in t:
                sql.add((uid, p["title"], t["rawSql"]))
            else:
                prom.add((uid, p["title"], t["expr"]))
    for v in doc.get("templating", {}).get("list", []):
        if isinstance(v.get("query"), dict):
            sql.add((uid, f"variable {v['name']}", v["query"]["rawSql"]))
    for a in doc.get("annotations", {}).get("list", []):
        sql.add((uid, f"annotation {a['name']}", a["target"]["rawSql"]))
    return sql, prom


def test_every_query_in_the_json_is_in_the_catalog_and_back() -> None:
    """The integration test runs the catalog's SQL: nothing in the JSON may escape it."""
    catalog = generate().catalog
    sql, prom = set(), set()
    for doc in committed().values():
        s, p = _sql_and_promql(doc)
        sql |= s
        prom |= p
    assert sql == {(e.dashboard, e.panel, e.sql) for e in catalog.sql}
    assert prom == {(e.dashboard, e.panel, e.expr) for e in catalog.promql}
    assert len(catalog.sql) == 23 and len(catalog.promql) == 21


# -- PromQL -----------------------------------------------------------------------------

GRAFANA_PROM_VARS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}


def prom_text(expr: str) -> str:
    for var, value in GRAFANA_PROM_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # `make test` installs it (Debian package prometheus)
        pytest.fail("promtool is not installed: run `make tools`")
    return path


def check_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no expression parser of its own, but `check rules` parses each rule's expr."""
    rules = {
        "groups": [
            {
                "name": "koxpulse-dashboards",
                "rules": [
                    {"record": f"koxpulse:panel_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs = [prom_text(e.expr) for e in generate().catalog.promql]
    proc = check_rules(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promtool_check_catches_a_broken_expression(tmp_path: Path) -> None:
    proc = check_rules(["sum by (outcome) (rate(koxpulse_events_total[1m])"], tmp_path)
    assert proc.returncode != 0
    assert "unclosed left parenthesis" in proc.stdout + proc.stderr


_METRIC = re.compile(r"\b(koxpulse_[a-zA-Z0-9_:]+)")


def test_promql_names_exported_or_planned_metrics() -> None:
    exported = exported_sample_names()
    planned = planned_sample_names()
    used: set[str] = set()
    for e in generate().catalog.promql:
        names = set(_METRIC.findall(e.expr))
        assert names, f"{e.panel}: reads no koxpulse metric"
        used |= names
    unknown = used - exported - planned
    assert unknown == set(), f"not exported and not planned: {sorted(unknown)}"
    # PLANNED is for metrics another branch adds; once exported they must leave the list
    assert planned & exported == set(), "exported now: remove from dashboards.metric_names"
    assert set(PLANNED) <= {n.removesuffix("_bucket") for n in used} | used
    assert "koxpulse_events_total" in used and "koxpulse_dead_letters_total" in used


# -- provisioning -----------------------------------------------------------------------


def test_datasource_provisioning_matches_the_dashboards_and_holds_no_secret() -> None:
    text = (PROVISIONING / "datasources" / "koxpulse.yaml").read_text(encoding="utf-8")
    conf = yaml.safe_load(text)
    by_uid = {d["uid"]: d for d in conf["datasources"]}
    ch = by_uid[DATASOURCE_UID]
    assert ch["type"] == PLUGIN_TYPE
    assert ch["jsonData"]["host"] == "clickhouse" and ch["jsonData"]["port"] == 8123
    assert ch["jsonData"]["protocol"] == "http"
    assert ch["jsonData"]["defaultDatabase"] == "koxpulse"
    assert ch["secureJsonData"]["password"] == "${KOXPULSE_GRAFANA_CH_PASSWORD}"
    prom = by_uid[PROMETHEUS_UID]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    users = (ROOT / "deploy" / "clickhouse" / "users.d" / "grafana.xml").read_text()
    assert '<password from_env="KOXPULSE_GRAFANA_CH_PASSWORD"/>' in users
    assert "<readonly>2</readonly>" in users and "GRANT SELECT ON koxpulse.*" in users
    assert ch["jsonData"]["username"] in users


def test_dashboard_provider_points_at_the_generated_json() -> None:
    conf = yaml.safe_load((PROVISIONING / "dashboards" / "koxpulse.yaml").read_text())
    (provider,) = conf["providers"]
    assert provider["type"] == "file"
    assert provider["folderUid"] == "koxpulse"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/koxpulse"

"""Misuse of the dashboards, explain and report commands: one line, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("explain",), "required: alert_id"),
        (("explain", "x", "--format", "csv"), "invalid choice: 'csv'"),
        (("explain", "x", "--baseline-days", "0"), "--baseline-days '0': must be a positive"),
        (("report",), "required: --out"),
        (("report", "--out", "/no/such/dir/r.html"), "directory /no/such/dir does not exist"),
        (("dashboards",), "required: ACTION"),
        (("dashboards", "push", "--grafana", "ftp://g"), "must be http(s)://host"),
    ],
)
def test_misuse_exits_2_with_one_line(args: tuple[str, ...], expected: str) -> None:
    proc = run_cli(*args, env={"KOXPULSE_GRAFANA_TOKEN": "t"}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr


def test_dashboards_check_passes_on_the_committed_json() -> None:
    proc = run_cli("dashboards", "check", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "dashboards/json is up to date"


def test_dashboards_build_writes_the_three_files(tmp_path: Path) -> None:
    proc = run_cli("dashboards", "build", "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alerts-fraud.json",
        "pipeline-health.json",
        "regional-kpis.json",
    ]


def test_settings_redact_the_grafana_token() -> None:
    proc = run_cli("settings", env={"KOXPULSE_GRAFANA_TOKEN": "glsa_secret"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "KOXPULSE_GRAFANA_TOKEN=***" in proc.stdout
    assert "glsa_secret" not in proc.stdout

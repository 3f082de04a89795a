"""The deployment files pass the tools that will load them: promtool and amtool (Debian's
prometheus 2.42 and prometheus-alertmanager 0.25, installed by `make tools`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make tools` (Debian prometheus packages)")
    return path


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_prometheus_config_and_rules_are_valid() -> None:
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "1 rule files found" in out
    out = run(tool("promtool"), "check", "rules", str(DEPLOY / "prometheus/rules/koxpulse.yml"))
    assert "SUCCESS: 16 rules found" in out


def test_prometheus_rule_unit_tests_pass() -> None:
    out = run(
        tool("promtool"), "test", "rules", "koxpulse_test.yml", cwd=DEPLOY / "prometheus/rules"
    )
    assert "SUCCESS" in out


def test_a_broken_rule_expectation_fails(tmp_path: Path) -> None:
    """promtool really judges the expectations: change one number and the tests fail."""
    rules = DEPLOY / "prometheus/rules"
    shutil.copy(rules / "koxpulse.yml", tmp_path / "koxpulse.yml")
    text = (rules / "koxpulse_test.yml").read_text()
    assert "value: 0.25" in text
    (tmp_path / "koxpulse_test.yml").write_text(text.replace("value: 0.25", "value: 0.26"))
    proc = subprocess.run(
        [tool("promtool"), "test", "rules", "koxpulse_test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_alertmanager_example_config_is_valid() -> None:
    out = run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert "SUCCESS" in out and "1 inhibit rules" in out


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (("severity=critical", "region=CN-SD"), "oncall-wecom,east-wecom"),
        (("severity=critical", "region=CN-BJ"), "oncall-wecom,regions-wecom"),
        (("severity=warning", "region=CN-GD"), "south-wecom"),
        (("severity=warning", "region=CN-XJ"), "regions-wecom"),
        (("severity=info", "region=CN-SD"), "webhook"),
        (("severity=warning", "service=koxpulse"), "platform-wecom"),
    ],
)
def test_alertmanager_routes_by_severity_and_region(
    labels: tuple[str, ...], receivers: str
) -> None:
    out = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={DEPLOY / 'alertmanager' / 'alertmanager.yml'}",
        "alertname=kpi_anomaly",
        *labels,
    )
    assert out.strip().splitlines()[0] == receivers


def test_render_script_fills_the_secret_from_a_file(tmp_path: Path) -> None:
    template = DEPLOY / "alertmanager" / "alertmanager.yml"
    assert "__WECOM_API_SECRET__" in template.read_text()
    secret = tmp_path / "wecom_api_secret"
    secret.write_text("Xy3-_AbCdEf0123456789\n")
    rendered = tmp_path / "rendered.yml"
    env = {
        **os.environ,
        "RENDER_ONLY": "1",
        "ALERTMANAGER_TEMPLATE": str(template),
        "WECOM_API_SECRET_FILE": str(secret),
        "ALERTMANAGER_RENDERED": str(rendered),
    }
    run("sh", str(DEPLOY / "alertmanager" / "render-config.sh"), env=env)
    text = rendered.read_text()
    assert "__WECOM_API_SECRET__" not in text
    assert text.count('api_secret: "Xy3-_AbCdEf0123456789"') == 5
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"
    run(tool("amtool"), "check-config", str(rendered))
    # a secret that sed or YAML would misread is refused, not rendered
    secret.write_text('a"b&c\n')
    proc = subprocess.run(
        ["sh", str(DEPLOY / "alertmanager" / "render-config.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 2 and "characters a WeCom secret has not" in proc.stderr

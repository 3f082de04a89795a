"""The production stack as files: docker-compose.yml and everything it mounts parse, and
service names, ports and credentials agree with koxpulse's own settings.

No Docker engine runs here, so the stack itself cannot start in a test; what can be
checked without it is checked here (the configs are also run through promtool and
amtool in tests/integration/test_prometheus_rules.py and the Alertmanager tests).
"""

from __future__ import annotations

import re
import subprocess
from urllib.parse import urlsplit

import yaml

from koxpulse.settings import DEFAULT_METRICS_PORT, OPTIONS_BY_FIELD
from sinks.clickhouse import ClickHouseTarget
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def env_of(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def published(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in SERVICES[service].get("ports", [])}


def test_the_stack_has_every_production_service() -> None:
    assert set(SERVICES) >= {
        "kafka",
        "clickhouse",
        "prometheus",
        "alertmanager",
        "grafana",
        "koxpulse",
    }
    assert SERVICES["koxpulse"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    kafka = env_of("kafka")
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "zookeeper" not in SERVICES


def test_every_mounted_file_exists_and_parses() -> None:
    mounted = []
    for svc in SERVICES.values():
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith("./"):
                mounted.append(ROOT / src)
    assert mounted
    for path in mounted:
        assert path.exists(), path
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            if f.suffix in (".yml", ".yaml"):
                yaml.safe_load(f.read_text())
            elif f.suffix == ".json":
                import json

                json.loads(f.read_text())
            elif f.suffix == ".xml":
                import xml.etree.ElementTree as ET

                ET.parse(f)
            elif f.suffix == ".sh":
                subprocess.run(["sh", "-n", str(f)], check=True)


def test_koxpulse_reaches_the_services_by_their_compose_names_and_ports() -> None:
    env = env_of("koxpulse")
    host, port = env["KOXPULSE_KAFKA_BOOTSTRAP"].split(":")
    assert host == "kafka"
    assert f"PLAINTEXT://kafka:{port}" in env_of("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    target = ClickHouseTarget.parse(
        env["KOXPULSE_CLICKHOUSE"].replace("${", "").replace(":?set it in .env}", "")
    )
    assert (target.host, target.port, target.database) == ("clickhouse", 8123, "koxpulse")
    assert target.port in published("clickhouse")
    assert env_of("clickhouse")["CLICKHOUSE_DB"] == target.database
    assert env_of("clickhouse")["CLICKHOUSE_USER"] == target.username
    am = urlsplit(env["KOXPULSE_ALERTMANAGER_URLS"])
    assert am.hostname == "alertmanager" and am.port in published("alertmanager")
    metrics_port = int(env["KOXPULSE_METRICS_PORT"])
    assert metrics_port == DEFAULT_METRICS_PORT
    assert metrics_port in published("koxpulse")
    for name in env:
        assert name.removeprefix("KOXPULSE_").lower() in OPTIONS_BY_FIELD, name


def test_prometheus_scrapes_koxpulse_and_alerts_through_alertmanager() -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t
        for job in prom["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    assert f"koxpulse:{env_of('koxpulse')['KOXPULSE_METRICS_PORT']}" in targets
    am_targets = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am_targets == [f"alertmanager:{min(published('alertmanager'))}"]
    for rule_file in prom["rule_files"]:
        assert (ROOT / "deploy/prometheus" / rule_file).is_file()


def test_grafana_reads_clickhouse_and_prometheus_by_their_service_names() -> None:
    ds = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/koxpulse.yaml").read_text()
    )["datasources"]
    ch = next(d for d in ds if d["type"] == "grafana-clickhouse-datasource")
    assert ch["jsonData"]["host"] == "clickhouse"
    assert ch["jsonData"]["port"] in published("clickhouse")
    prom = next(d for d in ds if d["type"] == "prometheus")
    assert urlsplit(prom["url"]).hostname == "prometheus"
    assert urlsplit(prom["url"]).port in published("prometheus")
    assert "grafana-clickhouse-datasource" in env_of("grafana")["GF_INSTALL_PLUGINS"]


SECRET_KEY = re.compile(r"(PASSWORD|SECRET|TOKEN)", re.I)


def test_no_secret_is_written_in_clear() -> None:
    # every secret-looking variable in the compose file is a reference, never a value
    for name, svc in SERVICES.items():
        for key, value in svc.get("environment", {}).items():
            text = str(value)
            if SECRET_KEY.search(key) or ("://" in text and "@" in text):
                assert "${" in text or key.endswith("__FILE"), (name, key, text)
    for secret in COMPOSE.get("secrets", {}).values():
        path = ROOT / secret["file"]
        assert str(path.relative_to(ROOT)).startswith("deploy/secrets/")
    for path in (".env", "deploy/secrets/wecom_api_secret"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} must be git-ignored"
    # every variable the compose file needs is in the example environment file
    needed = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    example = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert needed <= set(example), needed - set(example)


def test_tracked_files_hold_no_credentials() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(
        r"(password|secret|token)\s*[:=]\s*['\"]?(?!\$|<|\*|__[A-Z_]+__|change-me|\{|none|null|$)[A-Za-z0-9+/_-]{12,}",
        re.I,
    )
    offenders = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".yml", ".yaml", ".xml", ".env", ".example", ".toml", ".sh"):
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith(("#", "<!--")):
                offenders.append(f"{name}:{i}: {line.strip()}")
    assert not offenders, offenders

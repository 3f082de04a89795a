"""Alert delivery against the real Alertmanager 0.25 (Debian's prometheus-alertmanager).

Each test starts its own Alertmanager on a free loopback port (temp storage,
clustering off) whose receiver is a webhook served by the test, and checks what
Alertmanager holds (``GET /api/v2/alerts``) and what it notified.
"""

from __future__ import annotations

import json
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from koxpulse.alerts import Alert
from koxpulse.metrics import Metrics
from koxpulse.settings import load
from koxpulse.simulator import simulate
from koxpulse.timeutil import ms_to_iso
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSender
from tests.conftest import run_cli
from tests.integration.am import Alertmanager, Notifications, wait_for
from tests.integration.conftest import free_port

ALERT_SQL = (
    "SELECT alert_id, kind, severity, status, region, channel, entity_type, entity_id, "
    "toUnixTimestamp64Milli(starts_at) AS starts_ms, summary "
    "FROM koxpulse.alerts FINAL ORDER BY alert_id"
)
LABELS = ("alertname", "severity", "region", "channel", "entity_type", "entity_id", "alert_id")


@pytest.fixture
def hook() -> Iterator[Notifications]:
    n = Notifications()
    yield n
    n.close()


@pytest.fixture
def am(tmp_path: Path, hook: Notifications) -> Iterator[Alertmanager]:
    a = Alertmanager(tmp_path, hook.port).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("am-stream") / "labelled.jsonl.gz"
    simulate(path, hours=6, seed=3, scale=0.2, incidents=True)
    return path


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def textfile(path: Path) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    }


def replay(stream: Path, d: Path, *extra: str) -> tuple[list[dict], dict[str, float], float]:
    dsn = f"chdb://{d / 'ch'}"
    started = time.monotonic()
    proc = run_cli(
        "run", "--input", str(stream), "--clickhouse", dsn,
        "--metrics-textfile", str(d / "m.prom"), *extra, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    q = run_cli("query", "--clickhouse", dsn, "--format", "json", ALERT_SQL)
    assert q.returncode == 0, q.stderr
    return [json.loads(x) for x in q.stdout.splitlines()], textfile(d / "m.prom"), elapsed


def test_replayed_alerts_arrive_with_the_contract_labels(
    stream: Path, am: Alertmanager, tmp_path: Path
) -> None:
    # a quiet period longer than the stream: every alert is still firing at the end, so
    # Alertmanager lists all of them (it drops resolved ones from its API)
    rows, metrics, _ = replay(
        stream, tmp_path, "--alertmanager", am.url, "--detect-quiet-ms", "864000000",
        "--alertmanager-dashboard-url", "https://grafana.example/d/kox?var-region={region}",
        "--alertmanager-runbook-url", "https://wiki.example/runbooks#{kind}",
    )  # fmt: skip
    assert len(rows) >= 5 and {r["status"] for r in rows} == {"firing"}
    held = {a["labels"]["alert_id"]: a for a in am.alerts()}
    assert sorted(held) == [r["alert_id"] for r in rows]
    for r in rows:
        a = held[r["alert_id"]]
        want = {
            "alertname": r["kind"],
            "severity": r["severity"],
            "region": r["region"],
            "channel": r["channel"],
            "entity_type": r["entity_type"],
            "entity_id": r["entity_id"],
            "alert_id": r["alert_id"],
        }
        assert a["labels"] == {k: v for k, v in want.items() if v}, r
        assert a["annotations"]["summary"] == r["summary"]
        assert a["annotations"]["description"].startswith(f"{r['kind']} on {r['entity_type']} ")
        assert a["annotations"]["dashboard_url"] == (
            f"https://grafana.example/d/kox?var-region={r['region']}"
        )
        assert a["annotations"]["runbook_url"] == f"https://wiki.example/runbooks#{r['kind']}"
        assert ts(a["startsAt"]) == ts(ms_to_iso(r["starts_ms"]))
        assert a["status"]["state"] == "active"
    # what koxpulse counts as delivered is what Alertmanager counts as received
    name = f"127.0.0.1:{am.port}"
    sent = metrics[f'koxpulse_alertmanager_alerts_sent_total{{alertmanager="{name}",send="first"}}']
    assert sent == sum(am.received().values()) >= len(rows)


def test_a_replay_delivers_resolved_alerts_with_ends_at(
    stream: Path, am: Alertmanager, tmp_path: Path
) -> None:
    rows, metrics, _ = replay(stream, tmp_path, "--alertmanager", am.url)
    resolved = [r for r in rows if r["status"] == "resolved"]
    assert resolved and len(resolved) == len(rows)
    received = am.received()
    assert received["resolved"] >= len(resolved)
    name = f"127.0.0.1:{am.port}"
    assert metrics[
        f'koxpulse_alertmanager_alerts_sent_total{{alertmanager="{name}",send="first"}}'
    ] == sum(received.values())
    # resolved in the past: Alertmanager no longer lists them as active
    ids = {r["alert_id"] for r in rows}
    assert not [a for a in am.alerts() if a["labels"]["alert_id"] in ids]


def alert(n: int, now_ms: int, **kw: object) -> Alert:
    a = Alert(
        alert_id=f"duplicate_code-{n:016x}",
        kind="duplicate_code",
        severity="warning",
        status="firing",
        region="CN-SD",
        channel="offline",
        entity_type="code",
        entity_id=f"C{n}",
        starts_at=now_ms - 600_000,
        ends_at=None,
        value=4.0,
        baseline=3.0,
        summary=f"Code C{n} was scanned by 4 different users.",
        details={"users": 4},
    )
    return replace(a, **kw)  # type: ignore[arg-type]


def sender(urls: tuple[str, ...], metrics: Metrics, **kw: object) -> AlertmanagerSender:
    cfg = AlertmanagerConfig(
        urls=urls,
        resend_interval_s=0.5,
        backoff_base_s=0.05,
        backoff_max_s=0.5,
        timeout_s=2.0,
        **kw,  # type: ignore[arg-type]
    )
    return AlertmanagerSender(cfg, metrics).start()


def ids_held(am: Alertmanager) -> list[str]:
    return sorted(a["labels"]["alert_id"] for a in am.alerts())


def test_resolving_sends_ends_at(am: Alertmanager, hook: Notifications) -> None:
    now = int(time.time() * 1000)
    s = sender((am.url,), Metrics())
    try:
        x = alert(1, now)
        s.submit([x])
        wait_for(lambda: len(hook.of(x.alert_id, "firing")) == 1, 15, "the firing notification")
        (held,) = am.alerts()
        assert set(held["labels"]) == set(LABELS) and held["labels"]["alert_id"] == x.alert_id
        ends = now - 60_000
        s.submit([replace(x, status="resolved", ends_at=ends)])
        wait_for(lambda: hook.of(x.alert_id, "resolved"), 15, "the resolved notification")
        (note,) = hook.of(x.alert_id, "resolved")
        assert ts(note["endsAt"]) == ts(ms_to_iso(ends))
        assert ts(note["startsAt"]) == ts(ms_to_iso(x.starts_at))
        assert am.alerts() == []
    finally:
        s.close(timeout=5)


def test_alerts_raised_while_alertmanager_is_down_arrive_once_it_is_back(
    am: Alertmanager, hook: Notifications
) -> None:
    now = int(time.time() * 1000)
    m = Metrics()
    s = sender((am.url,), m, queue_size=50)
    name = f"127.0.0.1:{am.port}"
    try:
        before = [alert(n, now) for n in (1, 2, 3)]
        s.submit(before)
        wait_for(
            lambda: all(hook.of(a.alert_id, "firing") for a in before), 15, "first notifications"
        )
        am.stop()
        during = [alert(n, now) for n in range(10, 20)]
        short = alert(30, now)  # fires and resolves while Alertmanager is away
        started = time.monotonic()
        s.submit(during)
        s.submit([short, replace(short, status="resolved", ends_at=now - 1000)])
        s.submit([replace(before[2], status="resolved", ends_at=now - 2000)])
        assert time.monotonic() - started < 0.5  # queued, not posted: the dataflow goes on
        wait_for(
            lambda: m.total("koxpulse_alertmanager_send_failures_total", alertmanager=name) >= 3,
            10,
            "failed posts while down",
        )
        time.sleep(2)  # several resend rounds while down: the queue stays bounded
        assert m.value("koxpulse_alertmanager_queue_depth", {"alertmanager": name}) <= 50
        assert m.total("koxpulse_alertmanager_dropped_total") == 0
        am.start()
        firing = sorted(a.alert_id for a in [*before[:2], *during])
        wait_for(lambda: ids_held(am) == firing, 15, "every firing alert held again")
        wait_for(lambda: am.received()["resolved"] >= 2, 10, "the resolved alerts")
        wait_for(lambda: all(hook.of(a.alert_id, "firing") for a in during), 15, "notifications")
        time.sleep(2)  # more resends: still one alert per label set, one notification each
        assert ids_held(am) == firing
        counts = Counter(a["labels"]["alert_id"] for a in hook.alerts if a["status"] == "firing")
        assert {k: v for k, v in counts.items() if v != 1} == {}
        assert set(counts) == {a.alert_id for a in [*before, *during]}
        assert not hook.of(short.alert_id, "firing")  # never fired while anyone listened
        assert (
            m.value(
                "koxpulse_alertmanager_alerts_sent_total", {"alertmanager": name, "send": "resend"}
            )
            > 0
        )
    finally:
        s.close(timeout=5)


def test_with_two_alertmanagers_and_one_down_delivery_continues(
    tmp_path: Path, am: Alertmanager, hook: Notifications
) -> None:
    other = Alertmanager(tmp_path, hook.port)  # configured, not started yet
    now = int(time.time() * 1000)
    m = Metrics()
    s = sender((other.url, am.url), m)
    try:
        alerts = [alert(n, now) for n in range(1, 6)]
        s.submit(alerts)
        want = sorted(a.alert_id for a in alerts)
        wait_for(lambda: ids_held(am) == want, 10, "delivery to the live Alertmanager")
        down = f"127.0.0.1:{other.port}"
        wait_for(
            lambda: m.total("koxpulse_alertmanager_send_failures_total", alertmanager=down) > 0,
            10,
            "failed posts to the one that is down",
        )
        assert (
            m.value(
                "koxpulse_alertmanager_alerts_sent_total",
                {"alertmanager": f"127.0.0.1:{am.port}", "send": "first"},
            )
            == 5
        )
        other.start()  # the second one comes up and catches up from its own queue
        wait_for(lambda: ids_held(other) == want, 10, "delivery to the second Alertmanager")
        assert (
            m.value(
                "koxpulse_alertmanager_alerts_sent_total", {"alertmanager": down, "send": "first"}
            )
            == 5
        )
    finally:
        s.close(timeout=5)
        other.stop()


def test_a_replay_with_alertmanager_down_is_not_held_up(stream: Path, tmp_path: Path) -> None:
    _, _, baseline = replay(stream, tmp_path / "a")
    down = f"127.0.0.1:{free_port()}"
    rows, metrics, elapsed = replay(
        stream, tmp_path / "b", "--alertmanager", f"http://{down}",
        "--alertmanager-flush-timeout", "2",
    )  # fmt: skip
    assert rows
    # the run only waits the bounded flush time for the queued first sends (margin for a
    # shared machine; an unbounded wait would be 10 s per retry round or forever)
    assert elapsed < 2 * baseline + 2 + 4, (elapsed, baseline)
    shutdown = metrics[
        f'koxpulse_alertmanager_dropped_total{{alertmanager="{down}",reason="shutdown"}}'
    ]
    # nothing delivered: the last state of each label set (an escalated alert has two, the
    # superseded severity is resolved) counted as given up at exit, never more than updates
    assert len(rows) <= shutdown <= metrics["koxpulse_alert_updates_total"]
    assert metrics[f'koxpulse_alertmanager_queue_depth{{alertmanager="{down}"}}'] == 0
    assert (
        sum(
            v
            for k, v in metrics.items()
            if k.startswith("koxpulse_alertmanager_send_failures_total")
        )
        >= 2
    )


def test_https_with_a_ca_file_and_basic_auth(tmp_path: Path, hook: Notifications) -> None:
    """Alertmanager behind TLS and basic auth (its --web.config.file): delivered with the CA
    and the password file; without the CA verification fails, it is never switched off."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with warnings.catch_warnings():  # the bcrypt hash Alertmanager's web config wants
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python 3.11/3.12 stdlib, with glibc's bcrypt

        hashed = crypt.crypt("s3cret-pass", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  kox: '{hashed}'\n"
    )
    am = Alertmanager(
        tmp_path, hook.port, web_config=web, ca_file=cert, auth=("kox", "s3cret-pass")
    ).start()
    password = tmp_path / "am-password"
    password.write_text("s3cret-pass\n")
    env = {
        "KOXPULSE_ALERTMANAGER_URLS": am.url,
        "KOXPULSE_ALERTMANAGER_USER": "kox",
        "KOXPULSE_ALERTMANAGER_PASSWORD_FILE": str(password),
        "KOXPULSE_ALERTMANAGER_CA": str(cert),
    }
    now = int(time.time() * 1000)
    try:
        m = Metrics()
        cfg = AlertmanagerConfig.from_settings(load({}, env=env))
        s = AlertmanagerSender(replace(cfg, backoff_base_s=0.05, backoff_max_s=0.2), m).start()
        s.submit([alert(1, now)])
        wait_for(lambda: m.total("koxpulse_alertmanager_alerts_sent_total") == 1, 10, "delivery")
        assert m.total("koxpulse_alertmanager_send_failures_total") == 0
        assert ids_held(am) == [alert(1, now).alert_id]
        assert s.close(timeout=2) == 0
        # the system CAs do not know this certificate: every post fails, none is unverified
        m2 = Metrics()
        no_ca = AlertmanagerConfig.from_settings(
            load({}, env={**env, "KOXPULSE_ALERTMANAGER_CA": ""})
        )
        s2 = AlertmanagerSender(replace(no_ca, backoff_base_s=0.05, backoff_max_s=0.2), m2).start()
        s2.submit([alert(2, now)])
        wait_for(
            lambda: m2.total("koxpulse_alertmanager_send_failures_total", reason="connection") >= 2,
            10,
            "failed verification",
        )
        assert m2.total("koxpulse_alertmanager_alerts_sent_total") == 0
        assert s2.close(timeout=0.5) == 1
        # a wrong password is refused by Alertmanager and retried (a rotation may be under way)
        password.write_text("wrong\n")
        m3 = Metrics()
        bad = AlertmanagerConfig.from_settings(load({}, env=env))
        s3 = AlertmanagerSender(replace(bad, backoff_base_s=0.05, backoff_max_s=0.2), m3).start()
        s3.submit([alert(3, now)])
        wait_for(
            lambda: m3.total("koxpulse_alertmanager_send_failures_total", reason="http_4xx") >= 2,
            10,
            "refused posts",
        )
        assert s3.close(timeout=0.5) == 1
        assert ids_held(am) == [alert(1, now).alert_id]
    finally:
        am.stop()

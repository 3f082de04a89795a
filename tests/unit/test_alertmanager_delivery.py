"""Alertmanager delivery logic: payloads, the bounded queue, resends, backoff, config.

The queue and backoff tests drive :class:`Delivery` with an injected clock and an
injected transport, a stand-in for Alertmanager's HTTP endpoint that records the
posted bodies and fails on demand: that is the only way to assert exact retry
times and queue states. Everything that concerns Alertmanager itself (labels as it
stores them, resolution, deduplication, HA pairs) is tested against the real
binary in tests/integration/test_alertmanager.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from koxpulse.alerts import Alert
from koxpulse.errors import ConfigError
from koxpulse.metrics import Metrics
from koxpulse.settings import load
from sinks.alertmanager import (
    HARD_CAP_FACTOR,
    AlertmanagerConfig,
    AlertmanagerSender,
    Delivery,
    labels_of,
    redact,
    to_payload,
)

T0 = 1_795_000_000_000  # 2026-11-18T11:06:40Z, epoch ms


def alert(n: int = 1, **kw: object) -> Alert:
    base = Alert(
        alert_id=f"reward_farming-{n:016x}",
        kind="reward_farming",
        severity="warning",
        status="firing",
        region="CN-SD",
        channel="offline",
        entity_type="user",
        entity_id=f"u{n}",
        starts_at=T0 + n,
        ends_at=None,
        value=25.0,
        baseline=20.0,
        summary=f"User u{n} scanned 25 distinct codes in 10 minutes.",
        details={"codes": 25, "window_minutes": 10},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StandIn:
    """Records posted alert lists; ``status`` is what it answers, None means refused."""

    def __init__(self) -> None:
        self.status: int | None = 200
        self.posts: list[list[dict]] = []

    def __call__(self, url, body, headers, timeout, context):
        if self.status is None:
            raise ConnectionRefusedError(111, "Connection refused")
        self.posts.append(json.loads(body))
        return self.status, "bad request" if self.status == 400 else ""

    def ids(self, post: int = -1) -> list[str]:
        return [a["labels"]["alert_id"] for a in self.posts[post]]


def delivery(
    queue_size: int = 10, interval: float = 60.0, seed: int = 7
) -> tuple[Delivery, Clock, StandIn, Metrics]:
    clock, am, metrics = Clock(), StandIn(), Metrics()
    cfg = AlertmanagerConfig(
        urls=("http://am-0:9093",), resend_interval_s=interval, queue_size=queue_size
    )
    d = Delivery(
        "http://am-0:9093", cfg, metrics, clock=clock, rng=random.Random(seed), transport=am
    )
    return d, clock, am, metrics


def put(d: Delivery, a: Alert) -> None:
    d.put((a.alert_id, a.severity), to_payload(a, d.config), a.status == "resolved")


def dropped(m: Metrics, reason: str) -> float:
    return m.value(
        "koxpulse_alertmanager_dropped_total", {"alertmanager": "am-0:9093", "reason": reason}
    )


def sent(m: Metrics, send: str) -> float:
    return m.value(
        "koxpulse_alertmanager_alerts_sent_total", {"alertmanager": "am-0:9093", "send": send}
    )


# -- payloads -------------------------------------------------------------------------------


def test_payload_has_the_contract_labels_annotations_and_event_times() -> None:
    cfg = AlertmanagerConfig(
        urls=("http://am:9093",),
        dashboard_url="https://grafana.example/d/kox?var-region={region}&var-channel={channel}",
        runbook_url="https://wiki.example/koxpulse/runbooks#{kind}",
    )
    a = alert(3, region="CN-SD", channel="线下 & more", status="resolved", ends_at=T0 + 1_800_003)
    p = to_payload(a, cfg)
    assert p["labels"] == {
        "alertname": "reward_farming",
        "severity": "warning",
        "region": "CN-SD",
        "channel": "线下 & more",
        "entity_type": "user",
        "entity_id": "u3",
        "alert_id": "reward_farming-0000000000000003",
    }
    assert p["startsAt"] == "2026-11-18T11:06:40.003Z"
    assert p["endsAt"] == "2026-11-18T11:36:40.003Z"
    assert p["annotations"]["summary"] == "User u3 scanned 25 distinct codes in 10 minutes."
    assert p["annotations"]["description"] == (
        "reward_farming on user u3 in CN-SD/线下 & more: value 25 against a usual 20. "
        'Evidence: {"codes": 25, "window_minutes": 10}'
    )
    assert p["annotations"]["dashboard_url"] == (
        "https://grafana.example/d/kox?var-region=CN-SD&var-channel=%E7%BA%BF%E4%B8%8B%20%26%20more"
    )
    assert p["generatorURL"] == p["annotations"]["dashboard_url"]
    assert (
        p["annotations"]["runbook_url"] == "https://wiki.example/koxpulse/runbooks#reward_farming"
    )


def test_firing_alert_has_no_ends_at_and_empty_labels_are_left_out() -> None:
    a = alert(1, channel="", region="")
    p = to_payload(a, AlertmanagerConfig(urls=("http://am:9093",)))
    assert "endsAt" not in p and "generatorURL" not in p
    assert set(p["annotations"]) == {"summary", "description"}
    assert set(labels_of(a)) == {"alertname", "severity", "entity_type", "entity_id", "alert_id"}


# -- the queue ------------------------------------------------------------------------------


def test_full_queue_drops_the_oldest_resend_never_a_first_send() -> None:
    d, clock, am, m = delivery(queue_size=3)
    for n in (1, 2, 3):
        put(d, alert(n))
    assert d.step() == 0.0 and am.ids() == [alert(n).alert_id for n in (1, 2, 3)]
    assert sent(m, "first") == 3
    am.status = None  # Alertmanager goes away
    clock.now += 60
    d.step()  # resends of 1, 2, 3 fill the queue; the post fails
    assert d.depth == 3 and len(am.posts) == 1
    put(d, alert(4))  # a new alert: the oldest resend (1) makes room
    assert dropped(m, "queue_full") == 1
    put(d, alert(5))
    put(d, alert(6))
    assert dropped(m, "queue_full") == 3
    put(d, alert(7))  # no resend left to drop: the first send is still kept
    assert d.depth == 4 and dropped(m, "queue_full") == 3 and dropped(m, "overflow") == 0
    assert m.value("koxpulse_alertmanager_queue_depth", {"alertmanager": "am-0:9093"}) == 4
    am.status = 200
    clock.now += 3600
    assert d.step() == 0.0
    assert am.ids() == [alert(n).alert_id for n in (4, 5, 6, 7)]
    assert sent(m, "first") == 7 and sent(m, "resend") == 0
    # resends 1-3 were long due: the next round sends them
    assert d.step() == 0.0 and am.ids() == [alert(n).alert_id for n in (1, 2, 3)]
    # every firing alert is re-sent each interval, in rounds when more are active than the
    # queue holds; nothing is dropped while Alertmanager takes them
    clock.now += 60
    ids = []
    while d.step() == 0.0:
        ids += am.ids()
    assert sorted(ids) == sorted(alert(n).alert_id for n in range(1, 8))
    assert sent(m, "resend") == 10 and dropped(m, "queue_full") == 3


def test_first_sends_beyond_the_hard_cap_drop_the_oldest_first_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d, _, am, m = delivery(queue_size=2)
    am.status = None
    for n in range(1, 2 * HARD_CAP_FACTOR + 3):
        put(d, alert(n))
    assert d.depth == 2 * HARD_CAP_FACTOR
    assert dropped(m, "overflow") == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "dropping the oldest" in errors[0].getMessage()
    am.status = 200
    d._retry_at = 0.0
    d.step()
    assert am.ids() == [alert(n).alert_id for n in range(3, 2 * HARD_CAP_FACTOR + 3)]


def test_a_newer_state_replaces_the_queued_one() -> None:
    d, clock, am, _ = delivery()
    am.status = None
    put(d, alert(1))
    d.step()  # fails: the firing state stays queued
    put(d, alert(1, status="resolved", ends_at=T0 + 600_001))
    assert d.depth == 1
    am.status = 200
    clock.now += 100
    d.step()
    assert len(am.posts) == 1 and am.posts[0][0]["endsAt"] == "2026-11-18T11:16:40.001Z"


def test_firing_alerts_are_resent_every_interval_resolved_ones_for_five_minutes() -> None:
    d, clock, am, m = delivery(interval=60)
    put(d, alert(1))
    put(d, alert(2))
    d.step()
    clock.now += 59
    assert d.step() == pytest.approx(1.0) and len(am.posts) == 1  # nothing due yet
    clock.now += 1
    d.step()
    assert sorted(am.ids()) == [alert(1).alert_id, alert(2).alert_id]
    put(d, alert(2, status="resolved", ends_at=T0 + 1_800_002))
    d.step()
    assert am.ids() == [alert(2).alert_id] and "endsAt" in am.posts[-1][0]
    resolved_sends = 1
    for _ in range(10):  # ten more minutes
        clock.now += 60
        d.step()
        resolved_sends += sum(1 for a in am.posts[-1] if "endsAt" in a)
    assert resolved_sends == 5  # the first send and resends within 300 s of resolving
    assert am.ids() == [alert(1).alert_id]  # the firing one goes on
    assert m.value("koxpulse_alertmanager_active_alerts", {"alertmanager": "am-0:9093"}) == 1


def test_backoff_doubles_with_seeded_jitter_and_resets_after_success() -> None:
    d, clock, am, m = delivery(seed=11)
    am.status = None
    put(d, alert(1))
    rng = random.Random(11)
    waits = []
    for _ in range(8):
        waits.append(d.step())
        clock.now += waits[-1]
    expected = [min(30.0, 0.5 * 2**i) * (0.5 + 0.5 * rng.random()) for i in range(8)]
    assert waits == pytest.approx(expected)
    assert max(waits) <= 30.0 and waits[6] >= 15.0  # capped at 30 s, jitter at most halves
    assert (
        m.value(
            "koxpulse_alertmanager_send_failures_total",
            {"alertmanager": "am-0:9093", "reason": "connection"},
        )
        == 8
    )
    am.status = 503
    assert d.step() > 0  # a 5xx is retried too
    clock.now += 100
    am.status = 200
    assert d.step() == 0.0 and sent(m, "first") == 1
    am.status = None
    put(d, alert(2))
    first_wait = d.step()
    assert 0.25 <= first_wait <= 0.5  # the backoff starts again from the base


def test_a_rejected_batch_is_counted_and_not_retried() -> None:
    d, clock, am, m = delivery()
    am.status = 400
    put(d, alert(1))
    assert d.step() == 0.0
    assert d.depth == 0 and dropped(m, "rejected") == 1 and sent(m, "first") == 0
    clock.now += 1
    d.step()
    assert len(am.posts) == 1


def test_severity_change_resolves_the_old_label_set() -> None:
    clock, am = Clock(), StandIn()
    cfg = AlertmanagerConfig(urls=("http://am-0:9093",))
    sender = AlertmanagerSender(
        cfg, Metrics(), clock=clock, wall_clock=lambda: 1_800_000_000.0, transport=am
    )
    sender.submit([alert(1)])
    sender.submit([alert(1, severity="critical")])
    (d,) = sender.deliveries
    d.step()
    posted = {(a["labels"]["severity"], a.get("endsAt")) for a in am.posts[0]}
    assert posted == {("warning", "2027-01-15T08:00:00.000Z"), ("critical", None)}
    clock.now += 60
    d.step()
    assert [(a["labels"]["severity"], "endsAt" in a) for a in am.posts[-1]] == [
        ("warning", True),
        ("critical", False),
    ]


def test_close_waits_a_bounded_time_and_counts_what_is_left() -> None:
    am = StandIn()
    am.status = None
    m = Metrics()
    cfg = AlertmanagerConfig(urls=("http://am-0:9093",), backoff_base_s=0.05, backoff_max_s=0.1)
    sender = AlertmanagerSender(cfg, m, transport=am).start()
    sender.submit([alert(1), alert(2)])
    import time

    started = time.monotonic()
    assert sender.close(timeout=0.5) == 2
    assert 0.4 <= time.monotonic() - started < 2.0
    assert dropped(m, "shutdown") == 2


def test_close_delivers_what_is_queued() -> None:
    am = StandIn()
    sender = AlertmanagerSender(
        AlertmanagerConfig(urls=("http://am-0:9093",)), Metrics(), transport=am
    )
    sender.start()
    sender.submit([alert(n) for n in range(1, 6)])
    assert sender.close(timeout=5) == 0
    assert sorted(
        a for post in am.posts for a in [x["labels"]["alert_id"] for x in post]
    ) == sorted(alert(n).alert_id for n in range(1, 6))


# -- configuration ----------------------------------------------------------------------------


def test_config_reads_secrets_from_files_and_never_shows_them(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pass\n")
    s = load(
        {},
        env={
            "KOXPULSE_ALERTMANAGER_URLS": "http://am-0:9093, https://am-1:9093/",
            "KOXPULSE_ALERTMANAGER_USER": "kox",
            "KOXPULSE_ALERTMANAGER_PASSWORD_FILE": str(pw),
        },
    )
    cfg = AlertmanagerConfig.from_settings(s)
    assert cfg.urls == ("http://am-0:9093", "https://am-1:9093/")
    assert cfg.headers()["Authorization"] == "Basic a294OnMzY3JldC1wYXNz"
    assert "s3cret" not in repr(cfg)
    token = tmp_path / "token"
    token.write_text("tok-123")
    s = load(
        {},
        env={
            "KOXPULSE_ALERTMANAGER_URLS": "http://am:9093",
            "KOXPULSE_ALERTMANAGER_TOKEN_FILE": str(token),
        },
    )
    assert AlertmanagerConfig.from_settings(s).headers()["Authorization"] == "Bearer tok-123"
    assert redact("https://am-1:9093/prefix/") == "https://am-1:9093/prefix"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KOXPULSE_ALERTMANAGER_URLS": "am:9093"}, "'am:9093' is not an http(s) URL"),
        (
            {"KOXPULSE_ALERTMANAGER_URLS": "http://u:pw@am:9093"},
            "put no credentials in the URL",
        ),
        (
            {"KOXPULSE_ALERTMANAGER_URLS": "http://am:9093", "KOXPULSE_ALERTMANAGER_USER": "u"},
            "needs both --alertmanager-user and --alertmanager-password-file",
        ),
        (
            {
                "KOXPULSE_ALERTMANAGER_URLS": "http://am:9093",
                "KOXPULSE_ALERTMANAGER_TOKEN_FILE": "/no/such/token",
            },
            "--alertmanager-token-file /no/such/token: cannot read it",
        ),
        (
            {
                "KOXPULSE_ALERTMANAGER_URLS": "http://am:9093",
                "KOXPULSE_ALERTMANAGER_DASHBOARD_URL": "https://g/d?u={user_id}",
            },
            "unknown placeholder {user_id}",
        ),
        (
            {"KOXPULSE_ALERTMANAGER_URLS": "https://am:9093", "KOXPULSE_ALERTMANAGER_CA": "/no/ca"},
            "--alertmanager-ca /no/ca: no such file",
        ),
    ],
)
def test_bad_alertmanager_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        AlertmanagerConfig.from_settings(load({}, env=env))
    assert message in str(err.value)
    assert "pw@" not in str(err.value)


def test_a_peer_that_hangs_up_is_a_retried_connection_failure() -> None:
    import http.client

    def hang_up(*_args: object) -> tuple[int, str]:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")

    clock, m = Clock(), Metrics()
    cfg = AlertmanagerConfig(urls=("http://am-0:9093",))
    d = Delivery("http://am-0:9093", cfg, m, clock=clock, transport=hang_up)
    put(d, alert(1))
    assert d.step() > 0 and d.depth == 1
    assert (
        m.value(
            "koxpulse_alertmanager_send_failures_total",
            {"alertmanager": "am-0:9093", "reason": "connection"},
        )
        == 1
    )

"""The exposure rule on a hand-written stream, with every number exact: first-scan variant,
post-exposure metrics, pre-period covariates, multi-variant users, daily rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.integration.test_replay_exact import query, replay

C, D = "CMP-C", "CMP-D"
BASE = {"region": "CN-SD", "channel": "offline"}


def ev(eid: str, etype: str, hhmm: str, **fields: object) -> dict[str, object]:
    return {"event_id": eid, "type": etype, "ts": f"2026-11-20T{hhmm}:00Z", **BASE, **fields}


def scan(eid: str, hhmm: str, user: str, code: str, camp: str, variant: str) -> dict[str, object]:
    return ev(eid, "scan", hhmm, user_id=user, code_id=code, campaign_id=camp, variant=variant)


STREAM = [
    ev("o1", "order", "08:00", order_id="A1", user_id="U1", amount=10.0, campaign_id=C,
       variant="control"),
    scan("s1", "09:00", "U1", "K1", C, "control"),
    ev("r1", "redemption", "09:05", user_id="U1", code_id="K1", amount=1.0, campaign_id=C,
       variant="control"),
    scan("s5", "09:10", "U2", "K5", D, "control"),
    scan("s3", "09:30", "U2", "K3", C, "treatment"),
    scan("s3", "09:30", "U2", "K3", C, "treatment"),  # a redelivery: ignored
    ev("r3", "redemption", "09:40", user_id="U2", code_id="K3", amount=2.0, campaign_id=C,
       variant="treatment"),
    scan("s4", "09:45", "U3", "K4", C, "control"),
    scan("s2", "10:00", "U1", "K2", C, "treatment"),  # U1 now seen in a second variant
    ev("o2", "order", "11:00", order_id="A2", user_id="U1", amount=25.0, campaign_id=C,
       variant="control"),
    ev("o3", "order", "12:00", order_id="A3", user_id="U2", amount=30.5, quantity=2,
       campaign_id=C, variant="treatment"),
]  # fmt: skip

USERS_SQL = (
    "SELECT campaign_id, user_id, variant, formatDateTime(first_exposure, '%H:%i') AS first, "
    "variants_seen, multi_variant, scans, redemptions, orders, revenue, converted, pre_scans, "
    "pre_redemptions, pre_orders, pre_revenue, fraud_user, fraud_device "
    "FROM koxpulse.ab_users ORDER BY campaign_id, user_id"
)
DAILY_SQL = (
    "SELECT campaign_id, variant, toString(day) AS day, new_users, exposed_users, scans, "
    "redemptions, orders, revenue, buyers, redemption_rate FROM koxpulse.ab_daily "
    "ORDER BY campaign_id, variant"
)


def _user(camp: str, user: str, variant: str, first: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "campaign_id": camp, "user_id": user, "variant": variant, "first": first,
        "variants_seen": 1, "multi_variant": 0, "scans": 1, "redemptions": 0, "orders": 0,
        "revenue": 0.0, "converted": 0, "pre_scans": 0, "pre_redemptions": 0, "pre_orders": 0,
        "pre_revenue": 0.0, "fraud_user": 0, "fraud_device": 0,
    }  # fmt: skip
    row.update(kw)
    return row


EXPECTED_USERS = [
    _user(C, "U1", "control", "09:00", variants_seen=2, multi_variant=1, scans=2, redemptions=1,
          orders=1, revenue=25.0, converted=1, pre_orders=1, pre_revenue=10.0),
    _user(C, "U2", "treatment", "09:30", redemptions=1, orders=1, revenue=30.5, converted=1,
          pre_scans=1),
    _user(C, "U3", "control", "09:45"),
    _user(D, "U2", "control", "09:10"),
]  # fmt: skip

EXPECTED_DAILY = [
    {"campaign_id": C, "variant": "control", "day": "2026-11-20", "new_users": 2,
     "exposed_users": 2, "scans": 2, "redemptions": 1, "orders": 2, "revenue": 35.0,
     "buyers": 1, "redemption_rate": 0.5},
    {"campaign_id": C, "variant": "treatment", "day": "2026-11-20", "new_users": 1,
     "exposed_users": 2, "scans": 2, "redemptions": 1, "orders": 1, "revenue": 30.5,
     "buyers": 1, "redemption_rate": 0.5},
    {"campaign_id": D, "variant": "control", "day": "2026-11-20", "new_users": 1,
     "exposed_users": 1, "scans": 1, "redemptions": 0, "orders": 0, "revenue": 0.0,
     "buyers": 0, "redemption_rate": 0.0},
]  # fmt: skip


def test_exposure_rule_exactly(tmp_path: Path) -> None:
    stream = tmp_path / "hand.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in STREAM), encoding="utf-8")
    dsn = f"chdb://{tmp_path / 'chdb'}"
    for _ in range(2):  # the second replay re-writes every row: nothing may change
        replay([stream], dsn, "--detectors", "off")
        assert query(dsn, USERS_SQL) == EXPECTED_USERS
        assert query(dsn, DAILY_SQL) == EXPECTED_DAILY
    # U1 is left out as multi-variant, leaving control with one user: refused, one line
    proc = run_cli("ab", "report", "--campaign", C, "--clickhouse", dsn)
    assert proc.returncode == 2
    assert "at least 2 analysed users, have control 1, treatment 1" in proc.stderr

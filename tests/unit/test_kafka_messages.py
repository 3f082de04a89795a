"""What goes to kox.dead_letters and kox.alerts (the broker round trip is in the integration tests)."""

from __future__ import annotations

import json

from koxpulse.alerts import Alert
from koxpulse.batches import DeadLetter
from sinks.kafka import alert_messages, dead_letter_messages


def test_dead_letter_message_is_the_raw_bytes_with_where_and_why() -> None:
    d = DeadLetter(1_795_305_600_000, "kox.orders", "2:41", "message is empty", "empty", b"\xff")
    [(key, value, headers)] = dead_letter_messages([d])
    assert key is None and value == b"\xff"
    assert dict(headers) == {
        "reason": b"message is empty",
        "reason_code": b"empty",
        "source": b"kox.orders",
        "position": b"2:41",
        "received_at": b"2026-11-22T00:00:00.000Z",
    }


def test_alert_message_is_the_row_as_json_keyed_by_alert_id() -> None:
    a = Alert(
        "duplicate_code-1",
        "duplicate_code",
        "warning",
        "resolved",
        "CN-GD",
        "offline",
        "code",
        "C1",
        1_795_305_600_000,
        1_795_305_660_000,
        3.0,
        None,
        "码 C1 …",
        {"users": 3},
    )
    [(key, value, headers)] = alert_messages([a])
    assert key == b"duplicate_code-1" and headers == []
    doc = json.loads(value)
    assert doc["status"] == "resolved" and doc["ends_at"] == "2026-11-22T00:01:00.000Z"
    assert doc["details"] == {"users": 3} and doc["summary"] == "码 C1 …"

"""Batch decoding: every message becomes exactly one event or one dead letter."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from koxpulse.batches import RawBatch
from koxpulse.decode import decode_batch
from koxpulse.events import decode_event

VALID = json.dumps(
    {
        "type": "scan",
        "event_id": "e1",
        "ts": "2026-11-22T08:00:00+08:00",
        "region": "CN-SD",
        "channel": "offline",
        "code_id": "c",
        "user_id": "u",
        "city": "济南",
    },
    ensure_ascii=False,
).encode()


def batch(messages: list[bytes], prefix: str = "") -> RawBatch:
    return RawBatch(
        "p",
        "kox.scans" if prefix else "/data/a.jsonl",
        prefix,
        list(range(100, 100 + len(messages))),
        messages,
        1234,
    )


def test_valid_and_invalid_messages_are_split_with_positions() -> None:
    out = decode_batch(batch([VALID, b"{oops", VALID.replace(b'"u"', b"7")]))
    assert [e.event_id for e in out.events] == ["e1"]
    assert out.ts == [1_795_305_600_000] and out.positions == [100]
    assert [(d.source, d.position, d.code) for d in out.dead] == [
        ("/data/a.jsonl", "101", "not_json"),
        ("/data/a.jsonl", "102", "wrong_type"),
    ]
    assert out.dead[1].reason == "scan field user_id must be a string, got number 7"
    assert out.dead[0].raw == b"{oops" and out.dead[0].received_at_ms == 1234


def test_kafka_positions_are_partition_colon_offset() -> None:
    out = decode_batch(batch([b"x"], prefix="2:"))
    assert (out.dead[0].source, out.dead[0].position) == ("kox.scans", "2:100")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.binary(max_size=120)
        | st.just(VALID)
        | st.builds(
            lambda cut, junk: VALID[:cut] + junk + VALID[cut:],
            st.integers(0, len(VALID)),
            st.binary(max_size=4),
        ),
        max_size=20,
    )
)
def test_any_batch_gives_one_outcome_per_message(messages: list[bytes]) -> None:
    out = decode_batch(batch(messages))
    assert len(out.events) + len(out.dead) == len(messages) == out.messages
    dead_positions = {int(d.position) for d in out.dead}
    assert dead_positions.isdisjoint(out.positions)
    for pos, ev in zip(out.positions, out.events, strict=True):
        assert decode_event(messages[pos - 100])[0] == ev  # the fast path agrees with the slow one

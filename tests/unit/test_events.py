"""The schema: what decodes, what is refused, and the exact words of each refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koxpulse.events import InvalidMessage, Order, Redemption, Scan, Shipment, decode_event

BASE = {"event_id": "e1", "region": "CN-SD", "channel": "offline"}


def msg(**fields: object) -> bytes:
    return json.dumps({**BASE, **fields}, ensure_ascii=False).encode()


def scan(**over: object) -> bytes:
    return msg(
        **{
            "type": "scan",
            "ts": "2026-11-22T08:00:01.250+08:00",
            "code_id": "c",
            "user_id": "u",
            **over,
        }
    )


def reason(raw: bytes) -> tuple[str, str]:
    with pytest.raises(InvalidMessage) as info:
        decode_event(raw)
    return info.value.code, info.value.reason


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        ("2026-11-22T08:00:01.250+08:00", 1_795_305_601_250),
        ("2026-11-22T00:00:01.250Z", 1_795_305_601_250),
        ("2026-11-22T00:00:01.250+00:00", 1_795_305_601_250),
        ("2026-11-21T19:00:01.250-05:00", 1_795_305_601_250),
        (1_795_305_601_250, 1_795_305_601_250),
        ("2026-11-22T00:00:00Z", 1_795_305_600_000),  # a day boundary in UTC
        ("2026-11-22T08:00:00+08:00", 1_795_305_600_000),  # the same instant at +08:00
        ("2026-11-21T23:59:59.999Z", 1_795_305_599_999),
        ("1969-12-31T23:59:59.999Z", -1),  # floor, not truncation toward zero
        (0, 0),
    ],
)
def test_timestamps_become_exact_utc_milliseconds(ts: object, ms: int) -> None:
    ev, got = decode_event(scan(ts=ts))
    assert isinstance(ev, Scan)
    assert got == ms


def test_each_type_decodes_with_its_fields() -> None:
    ts = "2026-11-22T00:00:00Z"
    ev, _ = decode_event(msg(type="redemption", ts=ts, code_id="c", user_id="u", amount=1.5))
    assert isinstance(ev, Redemption) and ev.amount == 1.5
    ev, _ = decode_event(msg(type="order", ts=ts, order_id="o", user_id="u", amount=3))
    assert isinstance(ev, Order) and ev.quantity == 1 and ev.amount == 3.0
    ev, _ = decode_event(msg(type="shipment", ts=ts, batch_id="b", codes=500))
    assert isinstance(ev, Shipment) and ev.codes == 500


def test_unknown_fields_and_nulls_for_optional_fields_are_accepted() -> None:
    ev, _ = decode_event(scan(extra={"x": [1, 2]}, lat=None, city="济南"))
    assert isinstance(ev, Scan) and ev.city == "济南" and ev.lat is None


@pytest.mark.parametrize(
    ("raw", "code", "text"),
    [
        (b"not json", "not_json", "message is not valid JSON: "),
        (b'{"type":"scan"', "not_json", "message is not valid JSON: Input data was truncated"),
        (b"[1, 2]", "not_object", "message is a JSON array, not an object"),
        (b"42", "not_object", "message is a JSON number, not an object"),
        (b"", "empty", "message is empty"),
        (b"   ", "empty", "message is empty"),
        (b"\xff\xfe{}", "invalid_utf8", "message is not valid UTF-8 (byte 0xff at offset 0)"),
        (
            scan(region="r").replace(b'"r"', b'"r\xff"'),
            "invalid_utf8",
            "message is not valid UTF-8 (byte 0xff at offset",
        ),
        (
            scan(junk="j").replace(b'"j"', b'"\xc3"'),
            "invalid_utf8",
            "message is not valid UTF-8 (byte 0xc3 at offset",
        ),
        (msg(ts=1), "missing_field", "message is missing required field type"),
        (
            msg(type="refund", ts=1),
            "unknown_type",
            "unknown event type 'refund' (expected scan, redemption, order or shipment)",
        ),
        (msg(type=3, ts=1), "wrong_type", "field type must be a string, got number"),
        (scan(user_id=None), "wrong_type", "scan field user_id must be a string, got null"),
        (
            msg(type="scan", ts=1, code_id="c"),
            "missing_field",
            "scan is missing required field user_id",
        ),
        (
            msg(type="redemption", ts=1, user_id="u"),
            "missing_field",
            "redemption is missing required field code_id",
        ),
        (
            msg(type="order", ts=1, order_id="o", user_id="u"),
            "missing_field",
            "order is missing required field amount",
        ),
        (
            msg(type="shipment", ts=1, batch_id="b"),
            "missing_field",
            "shipment is missing required field codes",
        ),
        (
            json.dumps(
                {
                    "type": "scan",
                    "ts": 1,
                    "region": "r",
                    "channel": "c",
                    "code_id": "c",
                    "user_id": "u",
                }
            ).encode(),
            "missing_field",
            "scan is missing required field event_id",
        ),
        (
            scan(ts="2026-11-21T10:00:00"),
            "ts_no_offset",
            "ts 2026-11-21T10:00:00 has no UTC offset",
        ),
        (
            scan(ts="yesterday"),
            "ts_invalid",
            "ts 'yesterday' is not an RFC 3339 time with a UTC offset or epoch milliseconds",
        ),
        (
            scan(ts="1795305601250"),
            "ts_invalid",
            "ts '1795305601250' is not an RFC 3339 time with a UTC offset or epoch milliseconds",
        ),
        (
            scan(ts=1.5),
            "wrong_type",
            "ts must be an RFC 3339 string with a UTC offset or integer "
            "epoch milliseconds, got number 1.5",
        ),
        (
            scan(ts=10**17),
            "out_of_range",
            "ts 100000000000000000 is outside the supported range 1900-01-01..2299-12-31",
        ),
        (scan(user_id=7), "wrong_type", "scan field user_id must be a string, got number 7"),
        (scan(lat=123.0), "out_of_range", "scan field lat must be a number <= 90.0, got 123.0"),
        (scan(lon=200), "out_of_range", "scan field lon must be a number <= 180.0, got 200"),
        (
            scan(region=""),
            "out_of_range",
            'scan field region must be a string of length >= 1, got ""',
        ),
        (
            scan(channel="x" * 65),
            "out_of_range",
            "scan field channel must be a string of length <= 64",
        ),
        (
            scan(event_id="e" * 129),
            "out_of_range",
            "scan field event_id must be a string of length <= 128",
        ),
        (
            msg(type="order", ts=1, order_id="o", user_id="u", amount=-1),
            "out_of_range",
            "order field amount must be a number >= 0.0, got -1",
        ),
        (
            msg(type="order", ts=1, order_id="o", user_id="u", amount="5"),
            "wrong_type",
            'order field amount must be a number, got string "5"',
        ),
        (
            msg(type="order", ts=1, order_id="o", user_id="u", amount=1, quantity=0),
            "out_of_range",
            "order field quantity must be an integer >= 1, got 0",
        ),
        (
            msg(type="order", ts=1, order_id="o", user_id="u", amount=1, quantity=True),
            "wrong_type",
            "order field quantity must be an integer, got boolean true",
        ),
        (
            msg(type="shipment", ts=1, batch_id="b", codes=3.5),
            "wrong_type",
            "shipment field codes must be an integer, got number 3.5",
        ),
        (
            msg(type="shipment", ts=1, batch_id="b", codes=0),
            "out_of_range",
            "shipment field codes must be an integer >= 1, got 0",
        ),
    ],
)
def test_invalid_messages_get_a_precise_reason(raw: bytes, code: str, text: str) -> None:
    got_code, got_reason = reason(raw)
    assert got_code == code
    assert got_reason.startswith(text), got_reason


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = scan(pad="x" * 70_000)
    assert reason(raw) == ("oversized", f"message is larger than 64 KiB ({len(raw)} bytes)")
    # exactly 64 KiB is still allowed
    base = scan(pad="")
    ok = scan(pad="x" * (64 * 1024 - len(base)))
    assert len(ok) == 64 * 1024
    decode_event(ok)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(
        lambda pre, junk, post: pre + junk + post,
        st.sampled_from([scan()[:40], scan()[:-2], b'{"type":"scan","event_id":"']),
        st.binary(max_size=8),
        st.sampled_from([b"", scan()[40:], b'"}', b'","ts":1}']),
    )
)
def test_any_bytes_give_an_event_or_an_invalid_message(raw: bytes) -> None:
    try:
        ev, ms = decode_event(raw)
    except InvalidMessage as bad:
        assert bad.reason and bad.code
    else:
        assert isinstance(ms, int) and ev.event_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "event_id",
                "ts",
                "region",
                "channel",
                "code_id",
                "user_id",
                "amount",
                "quantity",
                "codes",
                "order_id",
                "batch_id",
                "lat",
            ]
        ),
        json_values
        | st.sampled_from(
            ["scan", "order", "redemption", "shipment", "2026-11-22T00:00:00Z", 1_795_305_600_000]
        ),
    )
)
def test_any_json_object_gives_an_event_or_an_invalid_message(doc: dict) -> None:
    raw = json.dumps(doc).encode()
    try:
        decode_event(raw)
    except InvalidMessage as bad:
        assert bad.reason and "\n" not in bad.reason

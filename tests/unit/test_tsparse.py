"""The fast timestamp path agrees with strict RFC 3339 parsing on every input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koxpulse import tsparse
from koxpulse.timeutil import datetime_to_ms
from koxpulse.tsparse import TimestampError, rfc3339_to_ms

offsets = st.sampled_from([0, 8 * 60, -5 * 60, 5 * 60 + 30, -(9 * 60 + 30), 14 * 60])
moments = st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2298, 1, 1))


def render(dt: datetime, off_min: int, style: int) -> str:
    local = dt.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=off_min)))
    body = local.strftime("%Y-%m-%dT%H:%M:%S")
    frac = [
        "",
        f".{local.microsecond // 100_000}",
        f".{local.microsecond // 10_000:02d}",
        f".{local.microsecond // 1000:03d}",
        f".{local.microsecond:06d}",
    ][style % 5]
    if off_min == 0 and style % 2 == 0:
        return body + frac + "Z"
    sign = "+" if off_min >= 0 else "-"
    return f"{body}{frac}{sign}{abs(off_min) // 60:02d}:{abs(off_min) % 60:02d}"


def strict(s: str) -> int:
    return datetime_to_ms(msgspec.json.decode(msgspec.json.encode(s), type=datetime))


@settings(max_examples=500, deadline=None)
@given(moments, offsets, st.integers(0, 9), st.integers(0, 2))
def test_fast_path_equals_strict_parsing(dt: datetime, off: int, style: int, repeat: int) -> None:
    s = render(dt, off, style)
    want = strict(s)
    for _ in range(repeat + 1):  # the second call takes the cached-minute path
        assert rfc3339_to_ms(s) == want


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_string_is_either_a_time_or_a_timestamp_error(s: str) -> None:
    try:
        want: int | None = strict(s)
    except (msgspec.ValidationError, msgspec.DecodeError):
        want = None
    try:
        got = rfc3339_to_ms(s)
    except TimestampError:
        assert (
            want is None
            or not (-2_208_988_800_000 <= want <= 10_413_791_999_999)
            or (msgspec.json.decode(msgspec.json.encode(s), type=datetime).tzinfo is None)
        )
    else:
        assert got == want


def test_a_cached_minute_does_not_admit_malformed_seconds() -> None:
    assert rfc3339_to_ms("2026-11-22T08:00:01.250+08:00") == 1_795_305_601_250
    for bad in ("2026-11-22T08:00:61+08:00", "2026-11-22T08:00:1x+08:00", "2026-11-22T08:00+08:00"):
        with pytest.raises(TimestampError):
            rfc3339_to_ms(bad)


def test_the_minute_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tsparse, "_MAX_MINUTES", 5)
    for m in range(20):
        rfc3339_to_ms(f"2026-11-22T08:{m:02d}:00Z")
    assert len(tsparse._MINUTES) <= 5

"""Event time as integer epoch milliseconds, the only representation on the hot path.

Integers compare and bucket into minutes without allocation; aware datetimes
are made only at the edges (sinks, summaries).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MINUTE_MS = 60_000
DAY_MS = 86_400_000
# ClickHouse DateTime64 covers 1900-01-01 .. 2299-12-31; outside that a row cannot be stored.
MIN_TS_MS = -2_208_988_800_000
MAX_TS_MS = 10_413_791_999_999
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()

_offset_ms: dict[object, int] = {}


def datetime_to_ms(dt: datetime) -> int:
    """Exact epoch milliseconds of an aware datetime (microseconds are truncated).

    ``dt.timestamp()`` goes through floats and costs about twice as much; this
    keeps integer arithmetic and caches each distinct UTC offset.
    """
    tz = dt.tzinfo
    off = _offset_ms.get(tz)
    if off is None:
        delta = dt.utcoffset()
        if delta is None:  # pragma: no cover - the schema only admits aware datetimes
            raise ValueError(f"{dt.isoformat()} has no UTC offset")
        off = _offset_ms[tz] = delta // timedelta(milliseconds=1)
    return (
        (dt.toordinal() - _EPOCH_ORDINAL) * DAY_MS
        + dt.hour * 3_600_000
        + dt.minute * MINUTE_MS
        + dt.second * 1000
        + dt.microsecond // 1000
        - off
    )


def ms_to_datetime(ms: int) -> datetime:
    """Aware UTC datetime for epoch milliseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def ms_to_iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z``: the one format koxpulse prints."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

"""RFC 3339 event times to epoch milliseconds, fast for the shapes producers really send.

Nearly every timestamp is ``YYYY-MM-DDTHH:MM:SS[.f{1,3}]`` plus ``Z`` or ``±HH:MM``.
Such a string is its minute prefix and offset (the same for every event of
that minute) plus seconds and a fraction. The first string of each
(minute, offset) is parsed strictly by msgspec; its minute is remembered, and
later strings of that minute cost two dict lookups. Anything else, including
every invalid string, takes the strict path, which also explains refusals.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from koxpulse.timeutil import MAX_TS_MS, MIN_TS_MS, datetime_to_ms

_strict = msgspec.json.Decoder(datetime)
_encode = msgspec.json.encode

# ":SS", ":SS.f", ":SS.ff", ":SS.fff" -> milliseconds within the minute
_SECFRAC: dict[str, int] = {}
for _s in range(60):
    _SECFRAC[f":{_s:02d}"] = _s * 1000
    for _d in range(10):
        _SECFRAC[f":{_s:02d}.{_d}"] = _s * 1000 + _d * 100
    for _d in range(100):
        _SECFRAC[f":{_s:02d}.{_d:02d}"] = _s * 1000 + _d * 10
    for _d in range(1000):
        _SECFRAC[f":{_s:02d}.{_d:03d}"] = _s * 1000 + _d

_MINUTES: dict[str, int] = {}  # minute prefix + offset -> epoch ms of that minute
_MAX_MINUTES = 100_000  # a few months of minutes per offset; cleared when full


class TimestampError(ValueError):
    """A ``ts`` string that is not an RFC 3339 time with a UTC offset in range."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _split(s: str) -> tuple[str, str]:
    """(minute key, seconds-and-fraction) of a standard-shaped string; garbage otherwise."""
    if s[-1:] in ("Z", "z"):
        return s[:16] + "Z", s[16:-1]
    return s[:16] + s[-6:], s[16:-6]


def rfc3339_to_ms(s: str) -> int:
    """Epoch milliseconds of an RFC 3339 string with offset; raises :class:`TimestampError`."""
    key, frac = _split(s)
    base = _MINUTES.get(key)
    if base is not None:
        ms = _SECFRAC.get(frac)
        if ms is not None:
            ms += base
            if MIN_TS_MS <= ms <= MAX_TS_MS:
                return ms
    return _strict_to_ms(s, key, frac)


def _strict_to_ms(s: str, key: str, frac: str) -> int:
    shown = s if len(s) <= 64 else s[:61] + "..."
    try:
        dt = _strict.decode(_encode(s))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise TimestampError(
            "ts_invalid",
            f"ts {shown!r} is not an RFC 3339 time with a UTC offset or epoch milliseconds",
        ) from exc
    if dt.tzinfo is None:
        raise TimestampError("ts_no_offset", f"ts {shown} has no UTC offset")
    ms = datetime_to_ms(dt)
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise TimestampError(
            "out_of_range", f"ts {shown} is outside the supported range 1900-01-01..2299-12-31"
        )
    sec = _SECFRAC.get(frac)
    if (
        sec is not None
        and (key[-1] == "Z" or (key[-6] in "+-" and key[-3] == ":"))
        and ms - sec == ms - ms % 60_000
    ):
        if len(_MINUTES) >= _MAX_MINUTES:
            _MINUTES.clear()
        _MINUTES[key] = ms - sec
    return ms

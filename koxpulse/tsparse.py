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
from itertools import compress, repeat

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from koxpulse.timeutil import MAX_TS_MS, MIN_TS_MS, datetime_to_ms

_strict = msgspec.json.Decoder(datetime)
_TS_TYPE = pa.timestamp("ms", tz="UTC")
# Arrow initialises lazily on its first array (about 0.4 s here); do it at import, with the
# other start-up costs, rather than inside the first batch.
pa.array(["1970-01-01T00:00:00Z"], type=pa.string()).cast(_TS_TYPE)
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


def out_of_range_reason(shown: object) -> str:
    """The one wording for a time outside what ClickHouse can store."""
    return f"ts {shown} is outside the supported range 1900-01-01..2299-12-31"


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
        raise TimestampError("out_of_range", out_of_range_reason(shown))
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


_STRICT_SHAPE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?(Z|[+-]\d\d:\d\d)$"


def many_to_ms(stamps: list[int | str]) -> tuple[npt.NDArray[np.int64], dict[int, TimestampError]]:
    """Convert a batch of raw ``ts`` values (ints pass through) in one vectorised pass.

    Strings of the strict common shape are parsed by Arrow in C++ at once;
    anything else, or a batch Arrow refuses, goes through
    :func:`rfc3339_to_ms` one by one, whose verdicts are the reference (a
    property test checks both paths agree). Returns epoch ms (0 where a value
    failed) and the failures by index.
    """
    n = len(stamps)
    failures: dict[int, TimestampError] = {}
    is_str = list(map(isinstance, stamps, repeat(str)))
    if True not in is_str:
        out = np.array(stamps, dtype=np.int64)
        _check_range(out, range(n), stamps, failures)
        return out, failures
    out = np.zeros(n, dtype=np.int64)
    if False in is_str:
        is_int = [not x for x in is_str]
        int_idx = list(compress(range(n), is_int))
        out[int_idx] = list(compress(stamps, is_int))
        _check_range(out, int_idx, stamps, failures)
        str_idx: list[int] | range = list(compress(range(n), is_str))
        strings: list[str] = list(compress(stamps, is_str))  # type: ignore[arg-type]
    else:
        str_idx = range(n)
        strings = stamps  # type: ignore[assignment]
    slow: list[int] = []
    try:
        arr = pa.array(strings, type=pa.string())
        shaped = pc.match_substring_regex(arr, _STRICT_SHAPE)
        if pc.all(shaped).as_py():
            values = arr.cast(_TS_TYPE).cast(pa.int64()).to_numpy()
            out[str_idx] = values
            bad = np.flatnonzero((values < MIN_TS_MS) | (values > MAX_TS_MS)).tolist()
            slow = bad
        else:
            mask = shaped.to_pylist()
            fast = list(compress(range(len(strings)), mask))
            slow = [k for k, ok in enumerate(mask) if not ok]
            values = (
                pa.array(list(compress(strings, mask)), type=pa.string())
                .cast(_TS_TYPE)
                .cast(pa.int64())
                .to_numpy()
            )
            out[[str_idx[k] for k in fast]] = values
            slow += [fast[k] for k in np.flatnonzero((values < MIN_TS_MS) | (values > MAX_TS_MS))]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        slow = list(range(len(strings)))
    for k in slow:
        try:
            out[str_idx[k]] = rfc3339_to_ms(strings[k])
        except TimestampError as err:
            out[str_idx[k]] = 0
            failures[str_idx[k]] = err
    return out, failures


def _check_range(
    out: npt.NDArray[np.int64],
    idx: list[int] | range,
    stamps: list[int | str],
    failures: dict[int, TimestampError],
) -> None:
    vals = out[list(idx)] if not isinstance(idx, range) else out
    for k in np.flatnonzero((vals < MIN_TS_MS) | (vals > MAX_TS_MS)).tolist():
        j = idx[k]
        failures[j] = TimestampError(
            "out_of_range",
            out_of_range_reason(stamps[j]),
        )

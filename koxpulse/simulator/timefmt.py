"""Timestamp serialisation in the mix of formats real producers send.

Formats without milliseconds are only ever used for timestamps that are whole seconds
(the caller floors first), so every serialised `ts` is exact to the millisecond and the
ground truth, which works in epoch milliseconds, never disagrees with the file.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (suffix, offset in minutes, with milliseconds, share); suffix None = integer epoch ms
FORMATS: tuple[tuple[str | None, int, bool, float], ...] = (
    ("+08:00", 480, True, 0.40),
    ("+08:00", 480, False, 0.05),
    ("Z", 0, True, 0.19),
    ("Z", 0, False, 0.04),
    ("+00:00", 0, True, 0.07),
    ("+00:00", 0, False, 0.02),
    ("-05:00", -300, True, 0.008),
    ("-05:00", -300, False, 0.002),
    (None, 0, True, 0.21),
)
FORMAT_NAMES = (
    "rfc3339_+08:00_ms",
    "rfc3339_+08:00_s",
    "rfc3339_Z_ms",
    "rfc3339_Z_s",
    "rfc3339_+00:00_ms",
    "rfc3339_+00:00_s",
    "rfc3339_-05:00_ms",
    "rfc3339_-05:00_s",
    "epoch_ms",
)
_CUM: list[float] = []
_acc = 0.0
for _f in FORMATS:
    _acc += _f[3]
    _CUM.append(_acc)
_CUM = [c / _acc for c in _CUM]
SECOND_ONLY = frozenset(i for i, f in enumerate(FORMATS) if f[0] is not None and not f[2])
EPOCH_FMT = len(FORMATS) - 1


_CUM_NP = np.asarray(_CUM)
_SECOND_ONLY_NP = np.asarray([i in SECOND_ONLY for i in range(len(FORMATS))])
_OFFSET_MS_NP = np.asarray([f[1] * 60_000 for f in FORMATS], dtype=np.int64)
_SUFFIX = np.asarray([f[0] or "" for f in FORMATS], dtype=object)
_WITH_MS_NP = np.asarray([f[2] for f in FORMATS])
_SEC_MS = np.asarray([f"{r // 1000:02d}.{r % 1000:03d}" for r in range(60_000)], dtype=object)
_SEC = np.asarray([f"{r:02d}" for r in range(60)], dtype=object)


def choose_format(u: float) -> int:
    return min(bisect_right(_CUM, u), len(FORMATS) - 1)


def choose_formats(u: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.minimum(np.searchsorted(_CUM_NP, u, side="right"), len(FORMATS) - 1)


def floor_for_formats(
    ts: npt.NDArray[np.int64], fmt: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Second-precision producers report whole seconds."""
    return np.where(_SECOND_ONLY_NP[fmt], ts - ts % 1000, ts)


_PREFIX_CACHE: dict[int, str] = {}


def _minute_prefix(minute: int) -> str:
    pre = _PREFIX_CACHE.get(minute)
    if pre is None:
        if len(_PREFIX_CACHE) > 200_000:
            _PREFIX_CACHE.clear()
        pre = ms_to_datetime(minute).strftime("%Y-%m-%dT%H:%M:")
        _PREFIX_CACHE[minute] = pre
    return pre


def render_many(ts: npt.NDArray[np.int64], fmt: npt.NDArray[np.int64]) -> list[str | int]:
    """`TsFormatter.render` in bulk; `ts` must already be floored where the format needs."""
    n = len(ts)
    if n == 0:
        return []
    local = ts + _OFFSET_MS_NP[fmt]
    rem = local % 60_000
    minute = local - rem
    uniq, inv = np.unique(minute, return_inverse=True)
    prefixes = np.asarray([_minute_prefix(m) for m in uniq.tolist()], dtype=object)
    body = np.where(_WITH_MS_NP[fmt], _SEC_MS[rem], _SEC[rem // 1000])
    out = prefixes[inv.reshape(-1)] + body + _SUFFIX[fmt]
    epoch = fmt == EPOCH_FMT
    if epoch.any():
        out[epoch] = ts[epoch].tolist()
    result: list[str | int] = out.tolist()
    return result


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def iso_z(ms: int) -> str:
    """UTC with milliseconds and `Z`, the one format used in companion files."""
    rem = ms % 60_000
    pre = _minute_prefix(ms - rem)
    return f"{pre}{rem // 1000:02d}.{rem % 1000:03d}Z"


def local_naive(ms: int, offset_minutes: int = 480, with_ms: bool = False) -> str:
    dt = ms_to_datetime(ms + offset_minutes * 60_000)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{s}.{ms % 1000:03d}" if with_ms else s


class TsFormatter:
    """Renders epoch ms in a chosen format; caches the per-minute prefix for speed."""

    def render(self, ts: int, fmt: int) -> str | int:
        suffix, offset, with_ms, _ = FORMATS[fmt]
        if suffix is None:
            return ts
        local = ts + offset * 60_000
        rem = local % 60_000
        minute = local - rem
        # the prefix depends only on the shifted minute, whatever the offset
        pre = _minute_prefix(minute)
        if with_ms:
            return f"{pre}{rem // 1000:02d}.{rem % 1000:03d}{suffix}"
        return f"{pre}{rem // 1000:02d}{suffix}"

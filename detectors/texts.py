"""What the fraud detectors say: one-sentence summaries in English and Simplified Chinese,
plus the small presentation helpers they share (severity, top-N evidence, times).

Summaries are for a regional manager: one sentence, the numbers that matter, what it
probably means. ``lang`` is ``"en"`` (default) or ``"zh-CN"`` (``KOXPULSE_LANG``).
Everything here runs only when a detector fires, never on the per-event path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

LANGS: Final = ("en", "zh-CN")
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
TOP_N: Final = 10
"""At most this many ids in any list of contributors in ``details``."""


def check_lang(lang: str) -> str:
    """Return ``lang`` if it is supported, else raise ``ValueError``."""
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r} (expected one of {', '.join(LANGS)})")
    return lang


def severity(value: float, threshold: float) -> str:
    """``critical`` when the figure is at least 3x its threshold, else ``warning``."""
    return "critical" if value >= 3 * threshold else "warning"


def top(counts: Mapping[str, int], n: int = TOP_N) -> dict[str, int]:
    """The ``n`` largest counts, largest first, ties by id (deterministic)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(items[:n])


def first(ids: Iterable[str], n: int = TOP_N) -> list[str]:
    """The first ``n`` ids of an ordered collection."""
    out: list[str] = []
    for i in ids:
        if len(out) >= n:
            break
        out.append(i)
    return out


def iso(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC time with milliseconds."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def duration(lang: str, ms: int) -> str:
    """A span of event time in words: "41 minutes", "3 hours", "under a minute"."""
    ms = max(0, ms)
    if ms < MINUTE_MS:
        return "1 分钟" if lang == "zh-CN" else "under a minute"
    minutes = max(1, round(ms / MINUTE_MS))
    if minutes < 120:
        if lang == "zh-CN":
            return f"{minutes} 分钟"
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    hours = round(ms / HOUR_MS)
    return f"{hours} 小时" if lang == "zh-CN" else f"{hours} hours"


def _regions(regions: Iterable[str], lang: str) -> str:
    return ("、" if lang == "zh-CN" else ", ").join(regions)


def _n(x: float) -> str:
    """Thousands separators; one decimal for small non-integers."""
    if x == int(x) or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:.1f}"


# -- one function per kind (and rule) ----------------------------------------------------


def duplicate_code(lang: str, code: str, users: int, span_ms: int, regions: list[str]) -> str:
    where = _regions(regions, lang)
    if lang == "zh-CN":
        return (
            f"码 {code} 在 {duration(lang, span_ms)}内被 {users} 个不同用户扫描（{where}），"
            f"疑似泄露或假冒。"
        )
    return (
        f"Code {code} was scanned by {users} different users in {duration(lang, span_ms)} "
        f"({where}) — likely leaked or counterfeit."
    )


def farming_user(lang: str, user: str, codes: int, span_ms: int, region: str) -> str:
    if lang == "zh-CN":
        return (
            f"用户 {user} 在 {duration(lang, span_ms)}内扫码或核销了 {codes} 个不同的码"
            f"（{region}），疑似薅羊毛刷奖励。"
        )
    return (
        f"User {user} scanned or redeemed {codes} different codes in "
        f"{duration(lang, span_ms)} ({region}) — likely reward farming."
    )


def farming_device(
    lang: str, device: str, users: int, codes: int, span_ms: int, region: str
) -> str:
    if lang == "zh-CN":
        return (
            f"设备 {device} 在 {duration(lang, span_ms)}内被 {users} 个账号用来扫码或核销 "
            f"{codes} 个码（{region}），疑似刷单设备或群控。"
        )
    return (
        f"Device {device} was used by {users} different accounts for {codes} codes in "
        f"{duration(lang, span_ms)} ({region}) — likely a device farm collecting rewards."
    )


def cross_region(
    lang: str,
    batch: str,
    codes: int,
    span_ms: int,
    scanned: list[str],
    authorised: list[str],
) -> str:
    where = _regions(scanned, lang)
    auth = _regions(authorised, lang)
    if lang == "zh-CN":
        return (
            f"批次 {batch} 只授权在 {auth} 销售，但 {duration(lang, span_ms)}内有 {codes} "
            f"个码在 {where} 被扫描，疑似串货。"
        )
    return (
        f"Batch {batch} is authorised for {auth}, but {codes} of its codes were scanned in "
        f"{where} within {duration(lang, span_ms)} — likely channel diversion."
    )


def outlet_rate(
    lang: str, outlet: str, count: int, bucket_ms: int, usual: float, region: str
) -> str:
    ratio = count / usual if usual > 0 else float("inf")
    if lang == "zh-CN":
        return (
            f"门店 {outlet} 在 {duration(lang, bucket_ms)}内核销了 {count} 次，是平时"
            f"（约 {_n(usual)} 次）的 {_n(ratio)} 倍（{region}），疑似门店自行核销。"
        )
    return (
        f"Outlet {outlet} redeemed {count} rewards in {duration(lang, bucket_ms)}, "
        f"{_n(ratio)}x its usual {_n(usual)} ({region}) — the store may be cashing out "
        f"rewards itself."
    )


def outlet_burst(lang: str, outlet: str, device: str, count: int, span_ms: int, region: str) -> str:
    if lang == "zh-CN":
        return (
            f"门店 {outlet} 的设备 {device} 在 {duration(lang, span_ms)}内连续核销了 "
            f"{count} 次（{region}），疑似门店自行核销。"
        )
    return (
        f"Outlet {outlet} redeemed {count} rewards from one device ({device}) in "
        f"{duration(lang, span_ms)} ({region}) — the store may be cashing out rewards itself."
    )


def impossible_travel(
    lang: str,
    user: str,
    place_a: str,
    place_b: str,
    gap_ms: int,
    km: float,
    kmh: float,
) -> str:
    if lang == "zh-CN":
        return (
            f"用户 {user} 先在 {place_a} 扫码，{duration(lang, gap_ms)}后又在 {place_b} "
            f"扫码，两地相距 {_n(km)} 公里（约 {_n(kmh)} 公里/小时），不可能到达，"
            f"疑似账号共享或定位造假。"
        )
    return (
        f"User {user} scanned in {place_a} and {duration(lang, gap_ms)} later in {place_b}, "
        f"{_n(km)} km apart (about {_n(kmh)} km/h) — no one travels that fast; the account "
        f"is likely shared or its location spoofed."
    )


def place(city: str | None, region: str) -> str:
    """ "广州 (CN-GD)" when the city is known, else the region code."""
    return f"{city} ({region})" if city else region

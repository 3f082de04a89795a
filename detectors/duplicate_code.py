"""``duplicate_code``: one ``code_id`` scanned by several distinct users.

A one-code-per-item code belongs to whoever bought the item; the buyer may scan it
again, but a code scanned by several different users within a day was leaked
(printed on a poster, shared in a chat group) or copied onto counterfeits.

Memory is what matters here: most codes are scanned once, and a day of scans must
be remembered. A code with one scanner is one row of a :class:`~detectors.compact.CompactTable`
(the code's 64-bit key, its scanner's id, the hour it came: about 40 bytes); only on a
second distinct user does the code get a small record (its users with the time each was
first seen, scans per region).
"""

from __future__ import annotations

from typing import Any

from detectors import texts
from detectors.compact import STR, CompactTable
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Scan

KIND = "duplicate_code"
_NEVER = -(1 << 62)

_LATEST = 1 << 62  # "no single-scanner code yet" for the oldest-bucket bound
# columns of a single-scanner code: its scanner, the expiry bucket it came in
_ONE_USER, _ONE_BUCKET = 0, 1
# slots of the record of a code with >= 2 distinct users
_USERS, _REGIONS, _REGION, _CHANNEL, _LAST, _EMIT, _WB, _SCANS, _BATCH = range(9)


class DuplicateCodeDetector:
    """One code scanned by ``min_users`` or more distinct users within ``window_ms``.

    Parameters (event time, epoch milliseconds throughout):

    - ``min_users`` (3): distinct users of one code that make it suspicious. Two is
      too few for real brands: a couple or a shop assistant checking the code for a
      customer scans it twice.
    - ``window_ms`` (24 h): how long a code's scanners are remembered.
    - ``max_codes`` (1,000,000): hard cap on codes with a single scanner; beyond it the
      oldest hour of them is forgotten first.
    - ``max_multi_codes`` (100,000) and ``max_users_per_code`` (256): caps on the rare
      codes with several scanners and on the users kept per code.
    - ``emit_interval_ms`` (60 s): at most one observation per code per interval.

    Observations: entity ``code``; ``value`` the distinct users within the window,
    ``baseline`` the threshold; ``region``/``channel`` those of the scan that brought
    the second user (stable for the incident). ``details``: ``distinct_users``,
    ``threshold``, ``window_minutes``, ``span_minutes``, the first 10 ``users`` in
    order of first scan, ``scans_by_region`` (counted from the second distinct user
    on: a single scanner is remembered by id only), ``batch_id``.

    The first user's time is not stored (memory); on the second user it is taken as
    that moment, so a spread can be understated by the gap between the first two.
    Single-scanner codes are found by a 64-bit hash of the code (see
    :mod:`detectors.compact`): two codes sharing one (about 1 in 10 million with a
    million codes held) would look like one code, so a third scanner could be reported
    one scan early; the scanner ids themselves are kept exactly.

    >>> from koxpulse.events import Scan
    >>> det = DuplicateCodeDetector()
    >>> def scan(user, minute):
    ...     return Scan(event_id=f"{user}-{minute}", ts=0, region="CN-GD", channel="offline",
    ...                 code_id="B00042-000317", user_id=user)
    >>> det.update(scan("U1", 0), 0) + det.update(scan("U1", 5), 5 * 60_000)  # owner rescans
    []
    >>> det.update(scan("U2", 9), 9 * 60_000)
    []
    >>> [obs] = det.update(scan("U3", 41), 41 * 60_000)
    >>> obs.entity_id, obs.value, obs.details["users"]
    ('B00042-000317', 3.0, ['U1', 'U2', 'U3'])
    >>> print(obs.summary)  # doctest: +NORMALIZE_WHITESPACE
    Code B00042-000317 was scanned by 3 different users in 32 minutes (CN-GD) — likely
    leaked or counterfeit.
    """

    kind = KIND

    def __init__(
        self,
        *,
        min_users: int = 3,
        window_ms: int = 24 * texts.HOUR_MS,
        max_codes: int = 1_000_000,
        max_multi_codes: int = 100_000,
        max_users_per_code: int = 256,
        emit_interval_ms: int = 60_000,
        lang: str = "en",
    ) -> None:
        if min_users < 2:
            raise ValueError("min_users must be at least 2")
        if window_ms <= 0 or max_codes < 1 or max_multi_codes < 1:
            raise ValueError("window_ms, max_codes and max_multi_codes must be positive")
        if max_users_per_code < min_users:
            raise ValueError("max_users_per_code must be at least min_users")
        self.min_users = min_users
        self.window_ms = window_ms
        self.max_codes = max_codes
        self.max_multi_codes = max_multi_codes
        self.max_users_per_code = max_users_per_code
        self.emit_interval_ms = emit_interval_ms
        self.lang = texts.check_lang(lang)
        self._bucket_ms = max(1, window_ms // 24)
        self._one = CompactTable((("user", STR), ("bucket", "i8")), max_rows=max_codes + 1)
        """code -> its only scanner so far and the bucket it came in (the common case)."""
        self._one_oldest = _LATEST  # no bucket in _one is older than this
        self._many: dict[str, list[Any]] = {}
        self._many_wheel: dict[int, list[str]] = {}

    # -- event path ------------------------------------------------------------------

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); only scans matter here."""
        out: list[Observation] = []
        if ev.__class__ is Scan:
            self.on_scan(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_scan(self, ev: Scan, t: int, out: list[Observation]) -> None:
        code = ev.code_id
        many = self._many
        rec = many.get(code) if many else None  # a code is in _one or in _many, not both
        if rec is None:
            one = self._one
            r = one.upsert(code)
            if r < 0:
                r = ~r
                one.strs[_ONE_USER].set(r, ev.user_id)
                b = t // self._bucket_ms
                one.views[_ONE_BUCKET][r] = b
                if b < self._one_oldest:
                    self._one_oldest = b
                if one.size > self.max_codes:
                    self._evict_one()
                return
            users = one.strs[_ONE_USER]
            if users.eq(r, ev.user_id):
                return  # the owner scanning again: the common repeat
            first_user = users.get(r)
            one.remove(r)
            rec = [{first_user: t}, {}, ev.region, ev.channel, t, _NEVER, -1, 1, ev.batch_id]
            many[code] = rec
            if len(many) > self.max_multi_codes:
                self._evict_many()
        self._multi(rec, code, ev, t, out)

    def _multi(self, rec: list[Any], code: str, ev: Scan, t: int, out: list[Observation]) -> None:
        users: dict[str, int] = rec[_USERS]
        user = ev.user_id
        if user not in users:
            users[user] = t
            if len(users) > self.max_users_per_code:
                del users[next(iter(users))]
        regions: dict[str, int] = rec[_REGIONS]
        region = ev.region
        regions[region] = regions.get(region, 0) + 1
        rec[_SCANS] += 1
        if t > rec[_LAST]:
            rec[_LAST] = t
        b = t // self._bucket_ms
        if b > rec[_WB]:
            rec[_WB] = b
            wl = self._many_wheel.get(b)
            if wl is None:
                self._many_wheel[b] = [code]
            else:
                wl.append(code)
        if len(users) < self.min_users:
            return
        cutoff = t - self.window_ms
        stale = []
        for u, ut in users.items():
            if ut >= cutoff:
                break
            stale.append(u)
        for u in stale:
            del users[u]
        n = len(users)
        if n >= self.min_users and t - rec[_EMIT] >= self.emit_interval_ms:
            rec[_EMIT] = t
            out.append(self._observation(code, rec, t))

    def _observation(self, code: str, rec: list[Any], t: int) -> Observation:
        users: dict[str, int] = rec[_USERS]
        n = len(users)
        start = min(users.values())
        span = t - start
        by_region = texts.top(rec[_REGIONS])
        regions = list(by_region)[:3]
        lang = self.lang
        return Observation(
            kind=KIND,
            entity_type="code",
            entity_id=code,
            t=t,
            region=rec[_REGION],
            channel=rec[_CHANNEL],
            severity=texts.severity(n, self.min_users),
            value=float(n),
            baseline=float(self.min_users),
            summary=texts.duplicate_code(lang, code, n, span, regions),
            details={
                "code_id": code,
                "batch_id": rec[_BATCH],
                "distinct_users": n,
                "threshold": self.min_users,
                "window_minutes": self.window_ms // texts.MINUTE_MS,
                "span_minutes": round(span / texts.MINUTE_MS, 1),
                "multi_user_since": texts.iso(start),
                "users": texts.first(users),
                "scans_by_region": by_region,
            },
        )

    # -- state -----------------------------------------------------------------------

    def expire(self, now: int) -> None:
        """Forget codes whose scans are all older than ``window_ms`` before ``now``."""
        cutoff_b = (now - self.window_ms) // self._bucket_ms
        if cutoff_b > self._one_oldest:
            one = self._one
            one.remove_where(one.live_mask() & (one.column(_ONE_BUCKET) < cutoff_b))
            oldest = one.min_live(_ONE_BUCKET)
            self._one_oldest = _LATEST if oldest is None else oldest
        many = self._many
        for b in [k for k in self._many_wheel if k < cutoff_b]:
            for code in self._many_wheel.pop(b):
                rec = many.get(code)
                if rec is not None and rec[_WB] <= b:
                    del many[code]

    def _evict_one(self) -> None:
        """Over the cap: forget the oldest bucket of single-scanner codes."""
        one = self._one
        buckets = one.column(_ONE_BUCKET)
        oldest = one.min_live(_ONE_BUCKET)
        while oldest is not None and one.size > self.max_codes:
            one.remove_where(one.live_mask() & (buckets == oldest))
            oldest = one.min_live(_ONE_BUCKET)
        self._one_oldest = _LATEST if oldest is None else oldest

    def _evict_many(self) -> None:
        many = self._many
        while len(many) > self.max_multi_codes and self._many_wheel:
            b = min(self._many_wheel)
            for code in self._many_wheel.pop(b):
                rec = many.get(code)
                if rec is not None and rec[_WB] <= b:
                    del many[code]
        if len(many) > self.max_multi_codes:  # records not yet on the wheel
            for code in list(many)[: len(many) - self.max_multi_codes]:
                del many[code]

    def state_size(self) -> int:
        """Codes remembered (single- and multi-user)."""
        return len(self._one) + len(self._many)

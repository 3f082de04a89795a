"""``duplicate_code``: one ``code_id`` scanned by several distinct users.

A one-code-per-item code belongs to whoever bought the item; the buyer may scan it
again, but a code scanned by several different users within a day was leaked
(printed on a poster, shared in a chat group) or copied onto counterfeits.

Memory is what matters here: most codes are scanned once, and a day of scans must
be remembered. A code with one scanner costs one dict slot holding a reference to
that scanner's user id; only on a second distinct user does the code get a small
record (its users with the time each was first seen, scans per region).
"""

from __future__ import annotations

from typing import Any

from detectors import texts
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Scan

KIND = "duplicate_code"
_NEVER = -(1 << 62)

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
        self._one: dict[str, str] = {}
        """code -> its only scanner so far (the common case)."""
        self._one_wheel: dict[int, list[str]] = {}
        """expiry bucket -> codes that entered ``_one`` in it."""
        self._many: dict[str, list[Any]] = {}
        self._many_wheel: dict[int, list[str]] = {}
        self._tail_b = _NEVER  # the newest bucket of _one_wheel and its list
        self._tail: list[str] = []

    # -- event path ------------------------------------------------------------------

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); only scans matter here."""
        out: list[Observation] = []
        if ev.__class__ is Scan:
            self.on_scan(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_scan(self, ev: Scan, t: int, out: list[Observation]) -> None:
        code = ev.code_id
        one = self._one
        first_user = one.get(code)
        if first_user is None:
            rec = self._many.get(code) if self._many else None
            if rec is None:
                one[code] = ev.user_id
                b = t // self._bucket_ms
                if b == self._tail_b:
                    self._tail.append(code)
                else:
                    self._put_one(b, code)
                if len(one) > self.max_codes:
                    self._evict_one()
                return
        elif first_user == ev.user_id:
            return  # the owner scanning again: the common repeat
        else:
            del one[code]  # its wheel entry stays; expiry skips codes no longer in _one
            rec = [{first_user: t}, {}, ev.region, ev.channel, t, _NEVER, -1, 1, ev.batch_id]
            self._many[code] = rec
            if len(self._many) > self.max_multi_codes:
                self._evict_many()
        self._multi(rec, code, ev, t, out)

    def _put_one(self, b: int, code: str) -> None:
        wl = self._one_wheel.get(b)
        if wl is None:
            wl = self._one_wheel[b] = [code]
        else:
            wl.append(code)
        if b >= self._tail_b:  # the newest bucket's list, appended to directly
            self._tail_b, self._tail = b, wl

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
        one = self._one
        for b in [k for k in self._one_wheel if k < cutoff_b]:
            for code in self._one_wheel.pop(b):
                one.pop(code, None)
        if self._tail_b not in self._one_wheel:
            self._tail_b, self._tail = _NEVER, []
        many = self._many
        for b in [k for k in self._many_wheel if k < cutoff_b]:
            for code in self._many_wheel.pop(b):
                rec = many.get(code)
                if rec is not None and rec[_WB] <= b:
                    del many[code]

    def _evict_one(self) -> None:
        """Over the cap: forget the oldest bucket of single-scanner codes."""
        one = self._one
        while len(one) > self.max_codes and self._one_wheel:
            for code in self._one_wheel.pop(min(self._one_wheel)):
                one.pop(code, None)
        if self._tail_b not in self._one_wheel:
            self._tail_b, self._tail = _NEVER, []

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

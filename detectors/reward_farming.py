"""``reward_farming``: accounts and devices that collect rewards at an inhuman rate.

Two entities, two questions:

- a **user** scanning or redeeming many distinct codes in a short time (a farmer with
  a bag of collected bottle caps, a script replaying codes);
- a **device** serving many distinct accounts (a phone farm rotating accounts), or
  many distinct codes across a few accounts.

Most entities touch one code in a window: they are kept as one row of a
:class:`~detectors.compact.CompactTable` (the entity's 64-bit key, its code, for a device
its account, and the time: a few tens of bytes, nothing the garbage collector has to
walk). On a second code (or account) the entity gets a record with the codes (and for
devices the accounts) it touched, each with the time it was first seen; those dicts are
pruned from their oldest end only once they are big enough to matter.
"""

from __future__ import annotations

from typing import Any

from detectors import texts
from detectors.compact import STR, CompactTable
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Redemption, Scan

KIND = "reward_farming"
_NEVER = -(1 << 62)
_BUCKET_MS = 60_000
_LATEST = 1 << 62  # "no single entity yet" for the oldest-bucket bound

# single user: its code and when; single device: its account, its code and when
_S_CODE, _S_T = 0, 1
_S_USER, _S_DCODE, _S_DT = 0, 1, 2

# user record
_U_CODES, _U_REGION, _U_CHANNEL, _U_EMIT, _U_WB, _U_DEV0, _U_DEVS = range(7)
# device record
_D_USERS, _D_CODES, _D_REGION, _D_CHANNEL, _D_EMIT, _D_WB = range(6)


def _prune(d: dict[str, int], cutoff: int) -> None:
    """Drop the entries first seen before ``cutoff`` (the dict is in time order)."""
    stale = []
    for k, v in d.items():
        if v >= cutoff:
            break
        stale.append(k)
    for k in stale:
        del d[k]


class RewardFarmingDetector:
    """Users with many codes, devices with many accounts (or many codes) in a short time.

    Parameters (event time in epoch milliseconds):

    - ``user_min_codes`` (20) distinct codes scanned or redeemed by one user within
      ``user_window_ms`` (10 min).
    - ``device_min_users`` (5) distinct accounts on one device within
      ``device_user_window_ms`` (30 min).
    - ``device_min_codes`` (40) distinct codes on one device within
      ``device_code_window_ms`` (10 min), counted only when the device was used by at
      least ``device_codes_min_users`` (2) accounts: a single-account device is reported
      as its user, and a household sharing a phone is allowed twice a person's codes.
    - ``device_outlet_redemptions`` (False): whether redemptions made *at an outlet*
      count at all, for users and devices. Off by default because a store's
      redemption terminal serves many customers by design, and an account that
      redeems many codes at one till is store staff cashing rewards out, which is
      outlet_self_redemption's incident (one alert per incident, not two). A farmer's
      own scans count either way.
    - ``max_users``, ``max_devices`` (500,000 each), ``max_items`` (1,000 codes or
      accounts per entity): hard caps; the oldest are dropped first.
    - ``emit_interval_ms`` (60 s): at most one observation per entity per interval.

    Entities with a single code are found by a 64-bit hash of their id (see
    :mod:`detectors.compact`; two ids sharing one, about 1 in 10 million with a million
    held, would count as one entity); their codes and accounts are kept exactly.

    Observations: entity ``user`` (``value`` distinct codes) or ``device`` (``value``
    distinct accounts, or distinct codes when only that rule holds); ``baseline`` the
    threshold crossed; ``region``/``channel`` where the entity was first seen in the
    current episode. ``details`` carry the counts, windows, the first 10 codes and the
    devices (for a user) or accounts (for a device).

    >>> from koxpulse.events import Scan
    >>> det = RewardFarmingDetector()
    >>> def scan(k, user="U1", device="d1"):
    ...     return Scan(event_id=str(k), ts=0, region="CN-SH", channel="ecommerce",
    ...                 code_id=f"B00007-{k:06d}", user_id=user, device_id=device)
    >>> [o for k in range(19) for o in det.update(scan(k), k * 20_000)]
    []
    >>> [obs] = det.update(scan(19), 19 * 20_000)
    >>> obs.entity_type, obs.entity_id, obs.details["distinct_codes"]
    ('user', 'U1', 20)
    >>> obs.summary
    'User U1 scanned or redeemed 20 different codes in 6 minutes (CN-SH) — likely reward farming.'
    >>> farm = [o for k in range(5) for o in det.update(scan(100 + k, f"F{k}", "farm"), k * 60_000)]
    >>> [(o.entity_type, o.entity_id, o.value) for o in farm]
    [('device', 'farm', 5.0)]
    """

    kind = KIND

    def __init__(
        self,
        *,
        user_min_codes: int = 20,
        user_window_ms: int = 10 * texts.MINUTE_MS,
        device_min_users: int = 5,
        device_user_window_ms: int = 30 * texts.MINUTE_MS,
        device_min_codes: int = 40,
        device_code_window_ms: int = 10 * texts.MINUTE_MS,
        device_codes_min_users: int = 2,
        device_outlet_redemptions: bool = False,
        max_users: int = 500_000,
        max_devices: int = 500_000,
        max_items: int = 1_000,
        emit_interval_ms: int = 60_000,
        lang: str = "en",
    ) -> None:
        if min(user_min_codes, device_min_users, device_min_codes) < 2:
            raise ValueError("thresholds must be at least 2")
        if min(user_window_ms, device_user_window_ms, device_code_window_ms) <= 0:
            raise ValueError("windows must be positive")
        if max_items < max(user_min_codes, device_min_users, device_min_codes):
            raise ValueError("max_items must be at least every threshold")
        self.user_min_codes = user_min_codes
        self.user_window_ms = user_window_ms
        self.device_min_users = device_min_users
        self.device_user_window_ms = device_user_window_ms
        self.device_min_codes = device_min_codes
        self.device_code_window_ms = device_code_window_ms
        self.device_codes_min_users = device_codes_min_users
        self.device_outlet_redemptions = device_outlet_redemptions
        self.max_users = max_users
        self.max_devices = max_devices
        self.max_items = max_items
        self.emit_interval_ms = emit_interval_ms
        self.lang = texts.check_lang(lang)
        self._device_window_ms = max(device_user_window_ms, device_code_window_ms)
        self._user1 = CompactTable((("code", STR), ("t", "i8")), max_rows=max_users + 1)
        """user -> (code, t) while it has one code."""
        self._device1 = CompactTable(
            (("user", STR), ("code", STR), ("t", "i8")), max_rows=max_devices + 1
        )
        """device -> (user, code, t) while it has one of each."""
        self._oldest = [_LATEST, _LATEST]  # no single user (device) came before this bucket
        self._users: dict[str, list[Any]] = {}
        """user -> its record, from its second code on."""
        self._devices: dict[str, list[Any]] = {}
        """device -> its record, from its second account or code on."""
        self._user_wheel: dict[int, list[str]] = {}
        """bucket -> records last active in it (singles are found by their time)."""
        self._device_wheel: dict[int, list[str]] = {}

    # -- event path ------------------------------------------------------------------

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); scans and redemptions matter."""
        out: list[Observation] = []
        cls = ev.__class__
        if cls is Scan:
            self.on_scan(ev, t, out)  # type: ignore[arg-type]
        elif cls is Redemption:
            self.on_redemption(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_scan(self, ev: Scan, t: int, out: list[Observation]) -> None:
        self._user(ev, t, out)
        if ev.device_id is not None:
            self._device(ev, t, out)

    def on_redemption(self, ev: Redemption, t: int, out: list[Observation]) -> None:
        if ev.outlet_id is not None and not self.device_outlet_redemptions:
            return
        self._user(ev, t, out)
        if ev.device_id is not None:
            self._device(ev, t, out)

    def _user(self, ev: Scan | Redemption, t: int, out: list[Observation]) -> None:
        user = ev.user_id
        code = ev.code_id
        users = self._users
        rec = users.get(user) if users else None
        b = t // _BUCKET_MS
        if rec is None:
            one = self._user1
            r = one.upsert(user)
            if r < 0:  # the common case: a single code, one compact row
                r = ~r
                one.strs[_S_CODE].set(r, code)
                one.views[_S_T][r] = t
                if b < self._oldest[0]:
                    self._oldest[0] = b
                if one.size + len(users) > self.max_users:
                    self._evict(0)
                return
            codes_col = one.strs[_S_CODE]
            if codes_col.eq(r, code):
                return  # the redemption of the code just scanned, or a rescan
            rec = [{codes_col.get(r): one.views[_S_T][r]}]
            rec += [ev.region, ev.channel, _NEVER, b, ev.device_id, None]
            one.remove(r)
            users[user] = rec
            self._put(self._user_wheel, b, user)
        elif b > rec[_U_WB]:
            rec[_U_WB] = b
            self._put(self._user_wheel, b, user)
        dev = ev.device_id
        if dev is not None and dev != rec[_U_DEV0]:
            devs = rec[_U_DEVS]
            if devs is None:
                rec[_U_DEVS] = {dev: 1}
            else:
                devs[dev] = devs.get(dev, 0) + 1
        codes: dict[str, int] = rec[_U_CODES]
        if code in codes:
            return
        codes[code] = t
        n = len(codes)
        if n < self.user_min_codes:
            return
        if n > self.max_items:
            del codes[next(iter(codes))]
        _prune(codes, t - self.user_window_ms)
        if len(codes) >= self.user_min_codes and t - rec[_U_EMIT] >= self.emit_interval_ms:
            rec[_U_EMIT] = t
            out.append(self._user_observation(user, rec, t))

    def _device(self, ev: Scan | Redemption, t: int, out: list[Observation]) -> None:
        dev: str = ev.device_id  # type: ignore[assignment]
        user = ev.user_id
        code = ev.code_id
        devices = self._devices
        rec = devices.get(dev) if devices else None
        b = t // _BUCKET_MS
        if rec is None:
            one = self._device1
            r = one.upsert(dev)
            if r < 0:  # the common case: one account, one code, one compact row
                r = ~r
                one.strs[_S_USER].set(r, user)
                one.strs[_S_DCODE].set(r, code)
                one.views[_S_DT][r] = t
                if b < self._oldest[1]:
                    self._oldest[1] = b
                if one.size + len(devices) > self.max_devices:
                    self._evict(1)
                return
            users_col, codes_col = one.strs[_S_USER], one.strs[_S_DCODE]
            if users_col.eq(r, user) and codes_col.eq(r, code):
                return
            t0 = one.views[_S_DT][r]
            rec = [{users_col.get(r): t0}, {codes_col.get(r): t0}]
            rec += [ev.region, ev.channel, _NEVER, b]
            one.remove(r)
            devices[dev] = rec
            self._put(self._device_wheel, b, dev)
        elif b > rec[_D_WB]:
            rec[_D_WB] = b
            self._put(self._device_wheel, b, dev)
        users: dict[str, int] = rec[_D_USERS]
        codes: dict[str, int] = rec[_D_CODES]
        check = False
        if user not in users:
            users[user] = t
            if len(users) >= self.device_min_users:
                check = True
                if len(users) > self.max_items:
                    del users[next(iter(users))]
        if code not in codes:
            codes[code] = t
            if len(codes) >= self.device_min_codes:
                check = True
                if len(codes) > self.max_items:
                    del codes[next(iter(codes))]
        if not check or t - rec[_D_EMIT] < self.emit_interval_ms:
            return
        _prune(users, t - self.device_user_window_ms)
        _prune(codes, t - self.device_code_window_ms)
        n_users = len(users)
        by_users = n_users >= self.device_min_users
        by_codes = len(codes) >= self.device_min_codes and n_users >= self.device_codes_min_users
        if by_users or by_codes:
            rec[_D_EMIT] = t
            out.append(self._device_observation(dev, rec, t, by_users))

    @staticmethod
    def _put(wheel: dict[int, list[str]], b: int, key: str) -> None:
        wl = wheel.get(b)
        if wl is None:
            wheel[b] = [key]
        else:
            wl.append(key)

    # -- observations ----------------------------------------------------------------

    def _user_observation(self, user: str, rec: list[Any], t: int) -> Observation:
        codes: dict[str, int] = rec[_U_CODES]
        n = len(codes)
        start = min(codes.values())
        devices: list[str] = [] if rec[_U_DEV0] is None else [rec[_U_DEV0]]
        if rec[_U_DEVS]:
            devices += [d for d in texts.top(rec[_U_DEVS]) if d not in devices]
        return Observation(
            kind=KIND,
            entity_type="user",
            entity_id=user,
            t=t,
            region=rec[_U_REGION],
            channel=rec[_U_CHANNEL],
            severity=texts.severity(n, self.user_min_codes),
            value=float(n),
            baseline=float(self.user_min_codes),
            summary=texts.farming_user(self.lang, user, n, t - start, rec[_U_REGION]),
            details={
                "rule": "user_codes",
                "user_id": user,
                "distinct_codes": n,
                "threshold": self.user_min_codes,
                "window_minutes": self.user_window_ms // texts.MINUTE_MS,
                "span_minutes": round((t - start) / texts.MINUTE_MS, 1),
                "first_seen_at": texts.iso(start),
                "codes": texts.first(codes),
                "devices": devices[: texts.TOP_N],
            },
        )

    def _device_observation(self, dev: str, rec: list[Any], t: int, by_users: bool) -> Observation:
        users: dict[str, int] = rec[_D_USERS]
        codes: dict[str, int] = rec[_D_CODES]
        n_users, n_codes = len(users), len(codes)
        codes_rule = n_users >= self.device_codes_min_users
        if by_users:
            value, threshold = n_users, self.device_min_users
        else:
            value, threshold = n_codes, self.device_min_codes
        sev = texts.severity(n_users, self.device_min_users)
        if codes_rule and sev == "warning":
            sev = texts.severity(n_codes, self.device_min_codes)
        start = min(users.values())
        if codes:
            start = min(start, min(codes.values()))
        return Observation(
            kind=KIND,
            entity_type="device",
            entity_id=dev,
            t=t,
            region=rec[_D_REGION],
            channel=rec[_D_CHANNEL],
            severity=sev,
            value=float(value),
            baseline=float(threshold),
            summary=texts.farming_device(
                self.lang, dev, n_users, n_codes, t - start, rec[_D_REGION]
            ),
            details={
                "rule": "device_users" if by_users else "device_codes",
                "device_id": dev,
                "distinct_users": n_users,
                "distinct_codes": n_codes,
                "users_threshold": self.device_min_users,
                "codes_threshold": self.device_min_codes,
                "users_window_minutes": self.device_user_window_ms // texts.MINUTE_MS,
                "codes_window_minutes": self.device_code_window_ms // texts.MINUTE_MS,
                "span_minutes": round((t - start) / texts.MINUTE_MS, 1),
                "users": texts.first(users),
                "codes": texts.first(codes),
            },
        )

    # -- state -----------------------------------------------------------------------

    def expire(self, now: int) -> None:
        """Forget users idle for ``user_window_ms`` and devices idle for the longer window."""
        self._expire(0, now - self.user_window_ms)
        self._expire(1, now - self._device_window_ms)

    def _entities(
        self, which: int
    ) -> tuple[CompactTable, int, dict[str, list[Any]], dict[int, list[str]], int, int]:
        """Users (0) or devices (1): singles, their time column, records, wheel, cap."""
        if which == 0:
            return self._user1, _S_T, self._users, self._user_wheel, _U_WB, self.max_users
        return self._device1, _S_DT, self._devices, self._device_wheel, _D_WB, self.max_devices

    def _expire(self, which: int, cutoff: int) -> None:
        one, t_col, state, wheel, wb, _ = self._entities(which)
        cutoff_b = cutoff // _BUCKET_MS
        if cutoff_b > self._oldest[which]:
            one.remove_where(one.live_mask() & (one.column(t_col) < cutoff_b * _BUCKET_MS))
            self._oldest[which] = self._oldest_single(one, t_col)
        get = state.get
        for b in [k for k in wheel if k < cutoff_b]:
            for key in wheel.pop(b):
                rec = get(key)
                if rec is not None and rec[wb] <= b:
                    del state[key]

    def _evict(self, which: int) -> None:
        """Over the cap: forget the least recently active entities first (a minute's)."""
        one, t_col, state, wheel, wb, cap = self._entities(which)
        times = one.column(t_col)
        oldest = self._oldest_single(one, t_col)
        while one.size + len(state) > cap and (wheel or one.size):
            b = min(min(wheel) if wheel else _LATEST, oldest)
            if oldest <= b:
                one.remove_where(one.live_mask() & (times < (b + 1) * _BUCKET_MS))
                oldest = self._oldest_single(one, t_col)
            for key in wheel.pop(b, ()):
                rec = state.get(key)
                if rec is not None and rec[wb] <= b:
                    del state[key]
        self._oldest[which] = oldest

    @staticmethod
    def _oldest_single(one: CompactTable, t_col: int) -> int:
        """The bucket of the oldest single (``_LATEST`` when there is none)."""
        t = one.min_live(t_col)
        return _LATEST if t is None else t // _BUCKET_MS

    def state_size(self) -> int:
        """Users and devices remembered."""
        return len(self._user1) + len(self._users) + len(self._device1) + len(self._devices)

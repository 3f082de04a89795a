"""The five fraud detectors behind one call per event.

:class:`FraudDetectors` holds one instance of each detector, built from a frozen
:class:`FraudParams`, and dispatches each event by its class to the detectors that
need it (a scan touches four, a redemption two, a shipment one, an order none). It
also expires their state once a minute of event time, so a caller only feeds events.
Everything in it is plain Python state: it pickles, and a restored copy continues
with exactly the same observations. A single event with a wild timestamp cannot wipe
the state: each automatic expiry moves at most ``expire_max_jump_ms`` past the last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors import texts
from detectors.cross_region import CrossRegionDetector
from detectors.duplicate_code import DuplicateCodeDetector
from detectors.impossible_travel import ImpossibleTravelDetector
from detectors.outlet_self_redemption import OutletSelfRedemptionDetector
from detectors.reward_farming import RewardFarmingDetector
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Redemption, Scan, Shipment

Handler = Callable[[Any, int, list[Observation]], None]
MINUTE = texts.MINUTE_MS
HOUR = texts.HOUR_MS
DAY = texts.DAY_MS


@dataclass(frozen=True, slots=True)
class FraudParams:
    """Every threshold of the fraud detectors; times in event-time milliseconds.

    The defaults are the documented ones (README settings table); each detector's
    docstring explains its own.
    """

    # duplicate_code
    dup_min_users: int = 3
    """Distinct users of one code within ``dup_window_ms`` that make it suspicious."""
    dup_window_ms: int = 24 * HOUR
    dup_max_codes: int = 1_000_000
    """Hard cap on remembered single-scanner codes."""

    # reward_farming
    farm_user_min_codes: int = 20
    """Distinct codes scanned or redeemed by one user within ``farm_user_window_ms``."""
    farm_user_window_ms: int = 10 * MINUTE
    farm_device_min_users: int = 5
    """Distinct accounts on one device within ``farm_device_user_window_ms``."""
    farm_device_user_window_ms: int = 30 * MINUTE
    farm_device_min_codes: int = 40
    """Distinct codes on one device (used by >= 2 accounts) within the code window."""
    farm_device_code_window_ms: int = 10 * MINUTE
    farm_device_codes_min_users: int = 2
    farm_device_outlet_redemptions: bool = False
    """Count redemptions made at an outlet (store terminals) towards the user and device
    rules (off: those are outlet_self_redemption's to judge)."""
    farm_max_entities: int = 500_000
    """Hard cap on remembered users, and on remembered devices."""

    # cross_region_scan
    cross_min_codes: int = 5
    """Distinct codes of one batch scanned outside its authorised region(s) within the window."""
    cross_min_codes_unsold: int = 3
    """The same for a batch with no scan in its authorised region(s) yet."""
    cross_window_ms: int = HOUR
    cross_auth_ttl_ms: int = 90 * DAY
    """A batch's authorisation is forgotten after this long without shipment or scan."""
    cross_pending_per_batch: int = 32
    """Scans buffered per not-yet-shipped batch, re-judged when its shipment arrives."""
    cross_max_batches: int = 1_000_000

    # outlet_self_redemption
    outlet_bucket_ms: int = 10 * MINUTE
    outlet_ratio: float = 5.0
    """Rate rule: a bucket's redemptions at least this many times the outlet's usual level."""
    outlet_min_count: int = 15
    """Rate rule: and at least this many redemptions in the bucket."""
    outlet_floor: float = 2.0
    """Usual level is never taken below this many redemptions per bucket."""
    outlet_warmup_ms: int = 24 * HOUR
    """History an outlet needs before the rate rule is armed."""
    outlet_alpha: float = 0.05
    outlet_burst_min: int = 10
    """Device-burst rule: redemptions from one device at one outlet within the burst window."""
    outlet_burst_window_ms: int = 30 * MINUTE
    outlet_ttl_ms: int = 7 * DAY
    outlet_max: int = 200_000

    # impossible_travel
    travel_max_kmh: float = 900.0
    travel_min_km: float = 300.0
    travel_window_ms: int = 24 * HOUR
    travel_max_users: int = 500_000
    """Hard cap on remembered users (their last geolocated scan). Over it the users whose
    last scan is oldest go first, so the cap bounds how far back positions reach: with
    N distinct geolocated users a day it is the last 24 h x 500k / N. A trip is only
    impossible when its gap is under distance / ``travel_max_kmh``, so at 1M such users
    a day (12 h kept) every impossible trip up to 10,800 km is still caught, and any
    within China (under 5,000 km: 5.6 h) up to 2.1M a day."""

    fold_into_outlet_ms: int = 30 * MINUTE
    """Reward farming at an outlet reported for self-redemption within this long is that
    outlet's incident (its staff accounts and till), not a second one."""

    # all
    emit_interval_ms: int = MINUTE
    """At most one observation per entity per this much event time."""
    expire_every_ms: int = MINUTE
    """How often (event time) FraudDetectors expires old state."""
    expire_max_jump_ms: int = HOUR
    """An event far ahead of the others (a bad clock) advances expiry by at most this much."""


class FraudDetectors:
    """One instance of each fraud detector; ``update`` per event, ``expire`` by time.

    >>> from koxpulse.events import Scan
    >>> fraud = FraudDetectors(FraudParams(dup_min_users=2), lang="zh-CN")
    >>> def scan(user, t):
    ...     return Scan(event_id=user, ts=t, region="CN-GD", channel="offline",
    ...                 code_id="B00042-000317", user_id=user)
    >>> fraud.update(scan("U1", 0), 0)
    []
    >>> [obs] = fraud.update(scan("U2", 60_000), 60_000)
    >>> obs.kind, obs.entity_type
    ('duplicate_code', 'code')
    >>> print(obs.summary)
    码 B00042-000317 在 1 分钟内被 2 个不同用户扫描（CN-GD），疑似泄露或假冒。
    """

    def __init__(self, params: FraudParams | None = None, *, lang: str = "en") -> None:
        p = params if params is not None else FraudParams()
        self.params = p
        self.lang = texts.check_lang(lang)
        every = p.emit_interval_ms
        self.duplicate_code = DuplicateCodeDetector(
            min_users=p.dup_min_users,
            window_ms=p.dup_window_ms,
            max_codes=p.dup_max_codes,
            emit_interval_ms=every,
            lang=lang,
        )
        self.reward_farming = RewardFarmingDetector(
            user_min_codes=p.farm_user_min_codes,
            user_window_ms=p.farm_user_window_ms,
            device_min_users=p.farm_device_min_users,
            device_user_window_ms=p.farm_device_user_window_ms,
            device_min_codes=p.farm_device_min_codes,
            device_code_window_ms=p.farm_device_code_window_ms,
            device_codes_min_users=p.farm_device_codes_min_users,
            device_outlet_redemptions=p.farm_device_outlet_redemptions,
            max_users=p.farm_max_entities,
            max_devices=p.farm_max_entities,
            emit_interval_ms=every,
            lang=lang,
        )
        self.cross_region = CrossRegionDetector(
            min_codes=p.cross_min_codes,
            min_codes_unsold=p.cross_min_codes_unsold,
            window_ms=p.cross_window_ms,
            auth_ttl_ms=p.cross_auth_ttl_ms,
            pending_per_batch=p.cross_pending_per_batch,
            pending_ttl_ms=p.cross_window_ms,
            max_batches=p.cross_max_batches,
            emit_interval_ms=every,
            lang=lang,
        )
        self.outlet_self_redemption = OutletSelfRedemptionDetector(
            bucket_ms=p.outlet_bucket_ms,
            ratio=p.outlet_ratio,
            min_count=p.outlet_min_count,
            floor=p.outlet_floor,
            warmup_ms=p.outlet_warmup_ms,
            alpha=p.outlet_alpha,
            burst_min=p.outlet_burst_min,
            burst_window_ms=p.outlet_burst_window_ms,
            outlet_ttl_ms=p.outlet_ttl_ms,
            max_outlets=p.outlet_max,
            emit_interval_ms=every,
            lang=lang,
        )
        self.impossible_travel = ImpossibleTravelDetector(
            max_kmh=p.travel_max_kmh,
            min_km=p.travel_min_km,
            window_ms=p.travel_window_ms,
            max_users=p.travel_max_users,
            emit_interval_ms=every,
            lang=lang,
        )
        self._next_expire = -(1 << 62)
        self._clock: int | None = None
        self._bind()

    def _bind(self) -> None:
        """Bound handlers per event class (rebuilt after unpickling, never pickled)."""
        self._on_scan: tuple[Handler, ...] = (
            self.duplicate_code.on_scan,
            self.reward_farming.on_scan,
            self.cross_region.on_scan,
            self.impossible_travel.on_scan,
        )
        self._on_redemption: tuple[Handler, ...] = (
            self.reward_farming.on_redemption,
            self.outlet_self_redemption.on_redemption,
        )
        self._on_shipment: Handler = self.cross_region.on_shipment  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_on_scan", "_on_redemption", "_on_shipment"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind()

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one decoded event at event time ``t`` (epoch ms); returns observations."""
        out: list[Observation] = []
        if t >= self._next_expire:
            clock = self._clock
            jump = self.params.expire_max_jump_ms
            self.expire(t if clock is None or t <= clock + jump else clock + jump)
        cls = ev.__class__
        if cls is Scan:
            dup, farm, cross, travel = self._on_scan
            dup(ev, t, out)
            self._farm(farm, ev, t, out)  # type: ignore[arg-type]
            cross(ev, t, out)
            travel(ev, t, out)
        elif cls is Redemption:
            farm, outlet = self._on_redemption
            outlet(ev, t, out)
            self._farm(farm, ev, t, out)  # type: ignore[arg-type]
        elif cls is Shipment:
            self._on_shipment(ev, t, out)
        return out

    def _farm(self, farm: Handler, ev: Scan | Redemption, t: int, out: list[Observation]) -> None:
        """Reward farming, except at an outlet already reported for self-redemption: staff
        cashing rewards out at their own till is that one incident."""
        n = len(out)
        farm(ev, t, out)
        outlet = ev.outlet_id
        if (
            len(out) > n
            and outlet is not None
            and self.outlet_self_redemption.flagged_within(
                outlet, t, self.params.fold_into_outlet_ms
            )
        ):
            del out[n:]

    def expire(self, now: int) -> None:
        """Drop state older than each detector's window, as of event time ``now``."""
        self.duplicate_code.expire(now)
        self.reward_farming.expire(now)
        self.cross_region.expire(now)
        self.outlet_self_redemption.expire(now)
        self.impossible_travel.expire(now)
        every = self.params.expire_every_ms
        self._clock = now
        self._next_expire = (now // every + 1) * every

    def state_sizes(self) -> dict[str, int]:
        """Entries each detector holds (for metrics and tests)."""
        return {
            "duplicate_code": self.duplicate_code.state_size(),
            "reward_farming": self.reward_farming.state_size(),
            "cross_region_scan": self.cross_region.state_size(),
            "outlet_self_redemption": self.outlet_self_redemption.state_size(),
            "impossible_travel": self.impossible_travel.state_size(),
        }

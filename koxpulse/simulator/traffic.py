"""Normal behaviour: daily rhythm, scans, redemptions, orders and the shipments that feed them.

Each region x channel series is generated from its own random stream with its per-scan
randomness drawn in bulk by numpy; only the parts with state (which code comes next,
who bought recently) run per event in Python. The background is kept free of the
patterns the detectors look for: codes are consumed once, devices are personal, users
stay in their home city, and cross-region scans are rare and capped per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .events import FLAG_PINNED, ORDER, REDEMPTION, SCAN, SHIPMENT, EventStore
from .experiment import Effects
from .world import (
    CAMPAIGNS,
    CHANNELS,
    CODE_BITS,
    COMMUNITY,
    ECOMMERCE,
    OFFLINE,
    REGIONS,
    SKUS,
    VARIANTS,
    World,
    series_of,
)

SCANS_PER_DAY = 270_000
ORDERS_PER_DAY = 95_000
ORDER_CHANNEL_SHARES = (0.50, 0.32, 0.18)
REDEEM_P = (0.35, 0.60, 0.50)
REDEEM_MEDIAN_MS = (7_200_000, 300_000, 1_800_000)
REDEEM_SIGMA = (0.9, 0.8, 0.9)
REDEEM_MIN_MS = (60_000, 15_000, 30_000)
REDEEM_CAP_MS = 12 * 3_600_000
RESCAN_P = 0.015
DIVERT_P = 0.001
NO_LOCATION_P = 0.05
SECOND_DEVICE_P = 0.15
REPEAT_RECENT_P = 0.07
REPEAT_RECENT_MEAN_MINUTES = 120
QTY_P = (0.55, 0.20, 0.10, 0.06, 0.04, 0.05)
DISCOUNTS = (1.0, 0.95, 0.9, 0.85)
DISCOUNT_P = (0.70, 0.12, 0.12, 0.06)
REWARD_CENTS = (50, 88, 100, 168, 188, 200, 288, 500)
WEEKEND_FACTOR = 1.2
CN_OFFSET_MS = 8 * 3_600_000
MINUTE = 60_000

ECOM_BATCH_SIZES = ((1000, 2000, 5000), (0.4, 0.4, 0.2))
OUTLET_BATCH_SIZES = ((100, 200, 300, 500), (0.2, 0.35, 0.3, 0.15))

# (floor, ((centre hour, width hours, amplitude), ...)) in China local time
_SHAPES: tuple[tuple[float, tuple[tuple[float, float, float], ...]], ...] = (
    (0.10, ((9.5, 1.6, 0.25), (12.5, 1.4, 0.75), (16.0, 2.2, 0.45), (21.0, 1.7, 1.45))),
    (0.08, ((9.5, 1.6, 0.45), (12.3, 1.5, 1.00), (16.0, 2.2, 0.60), (19.5, 1.7, 1.10))),
    (0.08, ((10.0, 1.6, 0.40), (12.0, 1.5, 0.90), (16.5, 2.0, 0.50), (20.0, 1.7, 1.20))),
)


def _raw_shape(channel: int, hours: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    floor, bumps = _SHAPES[channel]
    out = np.full_like(hours, floor)
    for centre, width, amp in bumps:
        d = np.abs(hours - centre)
        d = np.minimum(d, 24.0 - d)
        out += amp * np.exp(-0.5 * (d / width) ** 2)
    return out


_GRID: npt.NDArray[np.float64] = (np.arange(1440, dtype=np.float64) + 0.5) / 60.0
_NORM = [float(_raw_shape(c, _GRID).mean()) for c in range(len(CHANNELS))]


def daily_shape(channel: int, hours: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Mean 1 over a day: low 01:00-07:00, peaks around noon and in the evening."""
    return _raw_shape(channel, hours) / _NORM[channel]


def region_share(region: int) -> float:
    return REGIONS[region].weight / sum(r.weight for r in REGIONS)


class Clock:
    """The run's minutes; the last one may be partial when `hours` is fractional."""

    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.n_min = max(1, math.ceil((end_ms - start_ms) / MINUTE))
        self.m_start = start_ms + np.arange(self.n_min, dtype=np.int64) * MINUTE
        self.width = np.minimum(MINUTE, end_ms - self.m_start).astype(np.int64)
        local = self.m_start + self.width // 2 + CN_OFFSET_MS
        self.local_hour = (local % 86_400_000) / 3_600_000.0
        days = local // 86_400_000
        self.day_index = (days - days[0]).astype(np.int64)
        self.weekend = np.where((days + 3) % 7 >= 5, WEEKEND_FACTOR, 1.0)

    def minute_of(self, ms: int) -> int:
        return min(self.n_min - 1, max(0, (ms - self.start_ms) // MINUTE))


def scan_rate(world: World, clock: Clock, s: int) -> npt.NDArray[np.float64]:
    """Expected scans per minute of the series, before noise and incidents."""
    r, c = divmod(s, len(CHANNELS))
    per_min = SCANS_PER_DAY * world.scale * region_share(r) * REGIONS[r].channel_shares[c] / 1440
    return per_min * daily_shape(c, clock.local_hour) * clock.weekend * (clock.width / MINUTE)


def order_rate(world: World, clock: Clock, s: int) -> npt.NDArray[np.float64]:
    r, c = divmod(s, len(CHANNELS))
    per_min = ORDERS_PER_DAY * world.scale * region_share(r) * ORDER_CHANNEL_SHARES[c] / 1440
    return per_min * daily_shape(c, clock.local_hour) * clock.weekend * (clock.width / MINUTE)


@dataclass(frozen=True)
class Window:
    """A time window in one series (optionally one outlet) where an incident bends traffic."""

    series: int
    start: int
    end: int
    factor: float
    outlet: int = -1


@dataclass
class Modifiers:
    scan_factor: list[Window] = field(default_factory=list)
    order_factor: list[Window] = field(default_factory=list)
    redemption_keep: list[Window] = field(default_factory=list)
    """Share of redemptions (by redemption time) that still happen: broken rewards."""


class CodeSupply:
    """Which code a scan gets: each outlet (and each region's e-commerce warehouse) works
    through its current batch; the next batch is shipped when half the current one is
    gone, so a batch's shipment always precedes its first scan."""

    def __init__(self, world: World, store: EventStore, start_ms: int, seed: int) -> None:
        self.world = world
        self.store = store
        rng = np.random.default_rng([seed & ((1 << 64) - 1), 4])
        self.p_region: list[int] = []
        self.p_channel: list[int] = []
        self.p_outlet: list[int] = []
        self.cur: list[int] = []
        self.nxt: list[int] = []
        self.used: list[int] = []
        self.cap: list[int] = []
        self.eco_pool: list[int] = []
        self.outlet_pool: list[int] = [-1] * len(world.outlets)
        for ri in range(len(REGIONS)):
            self.eco_pool.append(self._new_pool(ri, ECOMMERCE, -1))
        for oi, o in enumerate(world.outlets):
            self.outlet_pool[oi] = self._new_pool(o.region, o.channel, oi)
        n = len(self.cur)
        # a few batches whose shipment never reaches the stream (shipped before the data began)
        unshipped = {
            int(x) for x in rng.choice(len(REGIONS), size=min(2, len(REGIONS)), replace=False)
        }
        unshipped.add(len(REGIONS) + int(rng.integers(0, n - len(REGIONS))))
        self.reserve: list[list[int]] = [[] for _ in REGIONS]
        self.unshipped_batches: list[str] = []
        store.use_stream("initial-shipments", 0)
        for p in range(n):
            b = self._fresh_batch(p, rng)
            self.cur[p] = b
            self.cap[p] = world.batches.size[b]
            if p in unshipped:
                self.unshipped_batches.append(world.batches.ids[b])
                continue
            self._ship(b, start_ms + p % 1000, pinned=True)
            # the last two codes of each initial batch may drift to another region
            size = world.batches.size[b]
            self.reserve[self.p_region[p]].extend(
                [(b << CODE_BITS) | size, (b << CODE_BITS) | (size - 1)]
            )
            self.cap[p] = size - 2

    def _new_pool(self, region: int, channel: int, outlet: int) -> int:
        self.p_region.append(region)
        self.p_channel.append(channel)
        self.p_outlet.append(outlet)
        self.cur.append(-1)
        self.nxt.append(-1)
        self.used.append(0)
        self.cap.append(0)
        return len(self.cur) - 1

    def _fresh_batch(self, p: int, rng: np.random.Generator | None = None) -> int:
        sizes, probs = ECOM_BATCH_SIZES if self.p_channel[p] == ECOMMERCE else OUTLET_BATCH_SIZES
        if rng is not None:
            size = int(rng.choice(sizes, p=probs))
            sku = self.world.pick_sku(float(rng.random()))
        else:
            u = self.store.rng.random()
            acc = 0.0
            size = sizes[-1]
            for sz, pr in zip(sizes, probs, strict=True):
                acc += pr
                if u < acc:
                    size = sz
                    break
            sku = self.world.pick_sku(self.store.rng.random())
        return self.world.batches.new(
            self.p_region[p], self.p_channel[p], self.p_outlet[p], sku, size
        )

    def _ship(self, b: int, ts: int, *, pinned: bool = False, flags: int = 0) -> None:
        ship(self.world, self.store, b, ts, pinned=pinned, flags=flags)

    def take(self, p: int, ts: int) -> int:
        k = self.used[p] + 1
        self.used[p] = k
        b = self.cur[p]
        cap = self.cap[p]
        if k * 2 >= cap and self.nxt[p] < 0:
            nb = self._fresh_batch(p)
            self.nxt[p] = nb
            self._ship(nb, ts)
        if k >= cap:
            self.cur[p] = self.nxt[p]
            self.cap[p] = self.world.batches.size[self.nxt[p]]
            self.nxt[p] = -1
            self.used[p] = 0
        return (b << CODE_BITS) | k

    def divert(self, region: int, u: float) -> int:
        """A code from another region's stock (parallel import); -1 when none is left."""
        other = (region + 1 + int(u * (len(REGIONS) - 1))) % len(REGIONS)
        pool = self.reserve[other]
        return pool.pop() if pool else -1


def ship(
    world: World, store: EventStore, b: int, ts: int, *, pinned: bool = False, flags: int = 0
) -> None:
    bt = world.batches
    fields: dict[str, object] = {
        "batch_id": bt.ids[b],
        "codes": bt.size[b],
        "sku": SKUS[bt.sku[b]].sku_id,
    }
    if bt.outlet[b] >= 0:
        fields["outlet_id"] = world.outlets[bt.outlet[b]].outlet_id
    ts, f = store.stamp(ts)
    store.add(
        SHIPMENT,
        series_of(bt.region[b], bt.channel[b]),
        ts,
        f,
        fields,
        flags=flags | (FLAG_PINNED if pinned else 0),
    )


def _pick_users(
    world: World, region: int, cities: npt.NDArray[np.int64] | None, u: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Activity-weighted users: of the outlet's city, or of the whole region online."""
    if cities is None:
        lo, hi = world.region_range[region]
        cum = world.region_cum[region]
        idx = np.searchsorted(cum, u * cum[-1], side="right")
        return lo + np.minimum(idx, hi - lo - 1)
    out = np.empty(len(u), dtype=np.int64)
    for ci in world.region_cities[region]:
        mask = cities == ci
        if not mask.any():
            continue
        lo, hi = world.city_range[ci]
        cum = world.city_cum[ci]
        idx = np.searchsorted(cum, u[mask] * cum[-1], side="right")
        out[mask] = lo + np.minimum(idx, hi - lo - 1)
    return out


def _timestamps(
    clock: Clock, counts: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    mins = np.repeat(np.arange(clock.n_min), counts)
    hi = clock.width[mins]
    # nothing but the initial shipments in the run's first second
    lo = np.where(mins == 0, np.minimum(1000, hi - 1), 0)
    offs = lo + (rng.random(len(mins)) * (hi - lo)).astype(np.int64)
    return np.sort(clock.m_start[mins] + offs)


def _apply_windows(
    lam: npt.NDArray[np.float64], clock: Clock, windows: list[Window], s: int
) -> npt.NDArray[np.float64]:
    for w in windows:
        if w.series == s and w.outlet < 0:
            mask = (clock.m_start >= w.start) & (clock.m_start < w.end)
            lam = np.where(mask, lam * w.factor, lam)
    return lam


def _noise(clock: Clock, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Mild multiplicative noise: per 15-minute block and per day."""
    blocks = rng.lognormal(0.0, 0.08, clock.n_min // 15 + 1)
    days = rng.lognormal(0.0, 0.04, int(clock.day_index[-1]) + 1)
    return blocks[np.arange(clock.n_min) // 15] * days[clock.day_index]


def generate_background(
    world: World,
    store: EventStore,
    clock: Clock,
    mods: Modifiers,
    seed: int,
    effects: Effects | None = None,
) -> CodeSupply:
    """``effects`` replaces the campaigns' treatment uplift per region and records the
    realised effect; without it the stream is the default one, byte for byte."""
    supply = CodeSupply(world, store, clock.start_ms, seed)
    for s in range(len(REGIONS) * len(CHANNELS)):
        rng = np.random.default_rng([seed & ((1 << 64) - 1), 101, s])
        store.use_stream("series", s)
        noise = _noise(clock, rng)
        lam = _apply_windows(scan_rate(world, clock, s) * noise, clock, mods.scan_factor, s)
        _scans(world, store, supply, clock, mods, s, rng.poisson(lam), rng, effects)
        lam_o = order_rate(world, clock, s) * noise
        mean_back = max(1.0, float(lam_o.mean()) * REPEAT_RECENT_MEAN_MINUTES)
        lam_o = _apply_windows(lam_o, clock, mods.order_factor, s)
        _orders(world, store, clock, s, rng.poisson(lam_o), rng, mean_back)
    return supply


def _scans(
    world: World,
    store: EventStore,
    supply: CodeSupply,
    clock: Clock,
    mods: Modifiers,
    s: int,
    counts: npt.NDArray[np.int64],
    rng: np.random.Generator,
    effects: Effects | None = None,
) -> None:
    r, c = divmod(s, len(CHANNELS))
    n = int(counts.sum())
    if n == 0:
        return
    ts_arr, tsj_l = store.stamp_many(_timestamps(clock, counts, rng), rng.random(n))
    ts_l = ts_arr.tolist()
    has_outlet = c in (OFFLINE, COMMUNITY)
    outlet_l: list[int]
    if has_outlet:
        so = np.asarray(world.series_outlets[s], dtype=np.int64)
        cum = world.series_outlet_cum[s]
        k = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(so) - 1)
        outlets = so[k]
        users = _pick_users(world, r, world.outlet_city[outlets], rng.random(n))
        outlet_l = outlets.tolist()
    else:
        users = _pick_users(world, r, None, rng.random(n))
        outlet_l = [-1] * n
    devk = (rng.random(n) < SECOND_DEVICE_P) & (world.bg_ndev[users] == 2)
    dev_slot_l = (2 * users + devk).tolist()
    users_l = users.tolist()
    lat = world.bg_lat[users] + rng.normal(0.0, 0.0008, n)
    lon = world.bg_lon[users] + rng.normal(0.0, 0.0008, n)
    lat_l = np.round(lat, 6).tolist()
    lon_l = np.round(lon, 6).tolist()
    noloc_l = (rng.random(n) < NO_LOCATION_P).tolist()
    ured_l = rng.random(n).tolist()
    delay = REDEEM_MEDIAN_MS[c] * np.exp(REDEEM_SIGMA[c] * rng.standard_normal(n))
    delay = np.clip(delay, REDEEM_MIN_MS[c], REDEEM_CAP_MS).astype(np.int64)
    rts_arr, rtsj_l = store.stamp_many(ts_arr + delay, rng.random(n))
    rts_l = rts_arr.tolist()
    fixed = np.asarray(REWARD_CENTS)[rng.integers(0, len(REWARD_CENTS), n)]
    free = rng.integers(50, 501, n)
    amount_l = (np.where(rng.random(n) < 0.7, fixed, free) / 100).tolist()
    uresc_l = rng.random(n).tolist()
    resc_delay = np.clip(180_000 * np.exp(1.2 * rng.standard_normal(n)), 10_000, 6 * 3_600_000)
    resc_delay_l = resc_delay.astype(np.int64).tolist()
    udiv_l = rng.random(n).tolist()
    udiv2_l = rng.random(n).tolist()

    keep_windows = [w for w in mods.redemption_keep if w.series == s]
    end = clock.end_ms
    base_p = REDEEM_P[c]
    deltas = (
        [cp.treatment_delta for cp in CAMPAIGNS]
        if effects is None
        else [effects.delta[ci][r] for ci in range(len(CAMPAIGNS))]
    )
    track = effects is not None
    track_scans = [0] * len(CAMPAIGNS)
    track_marginal = [0] * len(CAMPAIGNS)
    camp_ids = [cp.campaign_id for cp in CAMPAIGNS]
    bt = world.batches
    b_sku = bt.sku
    b_ids = bt.ids
    sku_ids = [sk.sku_id for sk in SKUS]
    sku_camp = [sk.campaign for sk in SKUS]
    user_ids = world.user_ids
    user_city = world.user_city
    city_names = [ci[1].name for ci in world.cities]
    outlet_ids = [o.outlet_id for o in world.outlets]
    devices = world.devices
    vbits = world.variant_bits
    assign = world._assign
    put = store.put
    take = supply.take
    divert = supply.divert
    outlet_pool = supply.outlet_pool
    eco_pool = supply.eco_pool[r]
    mask = (1 << CODE_BITS) - 1
    region = REGIONS[r].code
    channel = CHANNELS[c]

    for i in range(n):
        ts = ts_l[i]
        u = users_l[i]
        o = outlet_l[i]
        code = divert(r, udiv2_l[i]) if udiv_l[i] < DIVERT_P else -1
        diverted = code >= 0
        if not diverted:
            code = take(outlet_pool[o] if o >= 0 else eco_pool, ts)
        b = code >> CODE_BITS
        sku = b_sku[b]
        camp = sku_camp[sku]
        vb = vbits[u]
        if vb == 255:
            vb = assign(u)
        var = (vb >> camp) & 1
        dev = devices[dev_slot_l[i]]
        code_id = f"{b_ids[b]}-{code & mask:06d}"
        uid = user_ids[u]
        d: dict[str, object] = {
            "event_id": None,
            "type": "scan",
            "ts": tsj_l[i],
            "region": region,
            "channel": channel,
            "code_id": code_id,
            "user_id": uid,
            "batch_id": b_ids[b],
            "sku": sku_ids[sku],
            "outlet_id": outlet_ids[o] if o >= 0 else None,
            "device_id": dev,
            "city": city_names[user_city[u]],
            "lat": lat_l[i],
            "lon": lon_l[i],
            "campaign_id": camp_ids[camp],
            "variant": VARIANTS[var],
        }
        if o < 0:
            del d["outlet_id"]
        if noloc_l[i]:
            del d["lat"], d["lon"]
        # (never for a diverted code: its batch may show at most two foreign scans)
        rescan = dict(d) if uresc_l[i] < RESCAN_P and not diverted else None
        put(SCAN, s, ts, d, u, code)

        ur = ured_l[i]
        if track:
            # both potential outcomes of this scan: what the treatment adds to it
            track_scans[camp] += 1
            track_marginal[camp] += _redeemed(
                ur, base_p + deltas[camp], rts_l[i], end, keep_windows, o
            ) - _redeemed(ur, base_p, rts_l[i], end, keep_windows, o)
        p = base_p + deltas[camp] * var
        if ur < p:
            rts = rts_l[i]
            if rts < end:
                keep = True
                for w in keep_windows:
                    if w.start <= rts < w.end and (w.outlet < 0 or w.outlet == o):
                        keep = ur < p * w.factor
                if keep:
                    rd: dict[str, object] = {
                        "event_id": None,
                        "type": "redemption",
                        "ts": rtsj_l[i],
                        "region": region,
                        "channel": channel,
                        "code_id": code_id,
                        "user_id": uid,
                        "outlet_id": outlet_ids[o] if o >= 0 else None,
                        "device_id": dev,
                        "amount": amount_l[i],
                        "campaign_id": camp_ids[camp],
                        "variant": VARIANTS[var],
                    }
                    if o < 0:
                        del rd["outlet_id"]
                    put(REDEMPTION, s, rts, rd, u, code)
        if rescan is not None:
            # the owner checks the same code again later: same user, same code
            sts = ts + resc_delay_l[i]
            if sts < end:
                sts, sf = store.stamp(sts)
                rescan["ts"] = store.render_ts(sts, sf)
                if "lat" in rescan:  # a fresh GPS fix a few metres away
                    rescan["lat"] = round(lat_l[i] + 0.00021, 6)
                    rescan["lon"] = round(lon_l[i] - 0.00017, 6)
                put(SCAN, s, sts, rescan, u, code)
                if track:
                    track_scans[camp] += 1
    if effects is not None:
        for ci in range(len(CAMPAIGNS)):
            effects.scans[ci][r] += track_scans[ci]
            effects.marginal[ci][r] += track_marginal[ci]


def _redeemed(ur: float, p: float, rts: int, end: int, windows: list[Window], o: int) -> bool:
    """Whether a scan with draw ``ur`` is redeemed (and written) at probability ``p``:
    the same rule as the loop above, for the outcome under the other arm."""
    if ur >= p or rts >= end:
        return False
    keep = True
    for w in windows:
        if w.start <= rts < w.end and (w.outlet < 0 or w.outlet == o):
            keep = ur < p * w.factor
    return keep


def _orders(
    world: World,
    store: EventStore,
    clock: Clock,
    s: int,
    counts: npt.NDArray[np.int64],
    rng: np.random.Generator,
    mean_back: float,
) -> None:
    r, c = divmod(s, len(CHANNELS))
    n = int(counts.sum())
    if n == 0:
        return
    ts_arr, tsj_l = store.stamp_many(_timestamps(clock, counts, rng), rng.random(n))
    ts_l = ts_arr.tolist()
    if c in (OFFLINE, COMMUNITY):
        so = np.asarray(world.series_outlets[s], dtype=np.int64)
        cum = world.series_outlet_cum[s]
        k = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(so) - 1)
        outlets = so[k]
        users = _pick_users(world, r, world.outlet_city[outlets], rng.random(n))
        outlet_l = outlets.tolist()
    else:
        users = _pick_users(world, r, None, rng.random(n))
        outlet_l = [-1] * n
    users_l = users.tolist()
    urep_l = rng.random(n).tolist()
    back_l = rng.exponential(mean_back, n).astype(np.int64).tolist()
    sku_cum = world.sku_cum
    sku_l = np.minimum(
        np.searchsorted(sku_cum, rng.random(n) * sku_cum[-1], side="right"), len(SKUS) - 1
    ).tolist()
    qty_l = (rng.choice(len(QTY_P), size=n, p=QTY_P) + 1).tolist()
    disc_l = np.asarray(DISCOUNTS)[rng.choice(len(DISCOUNTS), size=n, p=DISCOUNT_P)].tolist()
    omitq_l = (rng.random(n) < 0.3).tolist()

    recent: list[int] = []
    user_ids = world.user_ids
    outlet_ids = [o.outlet_id for o in world.outlets]
    put = store.put
    next_order_id = store.next_order_id
    variant = world.variant
    region = REGIONS[r].code
    channel = CHANNELS[c]
    skus = SKUS
    camp_ids = [cp.campaign_id for cp in CAMPAIGNS]
    for i in range(n):
        if urep_l[i] < REPEAT_RECENT_P and recent:
            # a customer who bought a few hours ago comes back
            u = recent[max(0, len(recent) - 1 - back_l[i])]
        else:
            u = users_l[i]
        recent.append(u)
        sk = skus[sku_l[i]]
        qty = qty_l[i]
        cents = round(sk.price_cents * qty * disc_l[i])
        o = outlet_l[i]
        d: dict[str, object] = {
            "event_id": None,
            "type": "order",
            "ts": tsj_l[i],
            "region": region,
            "channel": channel,
            "order_id": next_order_id(),
            "user_id": user_ids[u],
            "amount": cents / 100,
            "quantity": qty,
            "sku": sk.sku_id,
            "outlet_id": outlet_ids[o] if o >= 0 else None,
            "campaign_id": camp_ids[sk.campaign],
            "variant": VARIANTS[variant(sk.campaign, u)],
        }
        if qty == 1 and omitq_l[i]:
            del d["quantity"]  # quantity defaults to 1
        if o < 0:
            del d["outlet_id"]
        put(ORDER, s, ts_l[i], d, u, -1, cents)

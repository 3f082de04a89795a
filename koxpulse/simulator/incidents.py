"""Labelled incidents: one or more of every alert kind in the contract.

Kinds that compare against a usual level bend the background traffic itself (through
`Modifiers`) and start only after 60 % of the run, so detectors have history. Fraud kinds
add their own events, with their own users, devices and batches where isolation matters,
so nothing outside the labelled window looks like them. Every incident sits in its own
region x channel series, so no two overlap.

A label starts when the incident first shows in the data, which is the earliest moment
any detector could know of it: a duplicate code at its first scan by a second user (the
buyer's own scan before it is ordinary), impossible travel at the scan that could not
have been reached (the scan at home before it is ordinary too). Detection delay is
measured from there, so it is the detector's delay, not the incident's own pace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .events import FLAG_INCIDENT, REDEMPTION, SCAN, EventStore
from .timefmt import iso_z
from .traffic import (
    CN_OFFSET_MS,
    MINUTE,
    REDEEM_P,
    REWARD_CENTS,
    Clock,
    Modifiers,
    Window,
    scan_rate,
    ship,
)
from .world import (
    CAMPAIGNS,
    CHANNELS,
    CODE_BITS,
    COMMUNITY,
    ECOMMERCE,
    OFFLINE,
    REGION_INDEX,
    REGIONS,
    SKUS,
    VARIANTS,
    World,
    series_of,
)

HOUR = 3_600_000


@dataclass(frozen=True)
class Label:
    kind: str
    entity_type: str
    entity_id: str
    region: str
    channel: str
    start: int
    end: int
    description: str

    def to_json(self, incident_id: str) -> dict[str, str]:
        return {
            "incident_id": incident_id,
            "kind": self.kind,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "region": self.region,
            "channel": self.channel,
            "start": iso_z(self.start),
            "end": iso_z(self.end),
            "description": self.description,
        }


@dataclass
class IncidentPlan:
    modifiers: Modifiers = field(default_factory=Modifiers)
    labels: list[Label] = field(default_factory=list)
    injectors: list[Callable[[World, EventStore, Clock, int], Label]] = field(default_factory=list)


def _align(clock: Clock, ms: int) -> int:
    """Round up onto the run's minute grid, where traffic modifiers apply."""
    k = math.ceil((ms - clock.start_ms) / MINUTE)
    return clock.start_ms + max(0, k) * MINUTE


def _slot(clock: Clock, earliest: int, duration: int, local_hour: float) -> tuple[int, int]:
    """First window starting at `local_hour` China time that fits; else as early as allowed."""
    earliest = _align(clock, earliest)
    latest = clock.end_ms - duration
    day0 = (earliest + CN_OFFSET_MS) // 86_400_000 * 86_400_000 - CN_OFFSET_MS
    for d in range(0, 60):
        t = _align(clock, day0 + d * 86_400_000 + int(local_hour * HOUR))
        if t > latest:
            break
        if t >= earliest:
            return t, t + duration
    return earliest, min(clock.end_ms, earliest + duration)


def _outlets_by_weight(world: World, s: int) -> list[int]:
    return sorted(world.series_outlets[s], key=lambda o: (-world.outlets[o].weight, o))


def _bend(full: float, strength: float) -> float:
    """A traffic factor ``strength`` of the way from 1 (no change) to ``full``."""
    return 1.0 + strength * (full - 1.0)


def plan_incidents(world: World, clock: Clock, seed: int, strength: float = 1.0) -> IncidentPlan:
    plan = IncidentPlan()
    mods = plan.modifiers
    span = clock.end_ms - clock.start_ms
    base_earliest = clock.start_ms + math.ceil(0.6 * span)

    # -- kinds that need a usual level ------------------------------------------------
    s = series_of(REGION_INDEX["CN-ZJ"], OFFLINE)
    a, b = _slot(clock, base_earliest, 120 * MINUTE, 10.0)
    keep, more = round(_bend(0.08, strength), 2), round(_bend(1.15, strength), 3)
    mods.redemption_keep.append(Window(s, a, b, keep))
    mods.scan_factor.append(Window(s, a, b, more))
    plan.labels.append(
        Label(
            "high_scan_low_redemption",
            "region",
            "CN-ZJ",
            "CN-ZJ",
            "offline",
            a,
            b,
            f"CN-ZJ/offline: scans run at ~{more:.0%} of normal (bot scans) while redemptions "
            f"fall to ~{keep:.0%} of normal for {(b - a) // MINUTE} min (reward claims failing "
            f"at the terminals)",
        )
    )

    s = series_of(REGION_INDEX["CN-GD"], OFFLINE)
    top = _outlets_by_weight(world, s)[0]
    a, b = _slot(clock, base_earliest, 120 * MINUTE, 11.0)
    mods.redemption_keep.append(Window(s, a, b, keep, outlet=top))
    plan.labels.append(
        Label(
            "high_scan_low_redemption",
            "outlet",
            world.outlets[top].outlet_id,
            "CN-GD",
            "offline",
            a,
            b,
            f"outlet {world.outlets[top].outlet_id} (CN-GD/offline, the region's busiest): "
            f"scans normal, redemptions at ~{keep:.0%} of normal for {(b - a) // MINUTE} min "
            f"(the store's redemption terminal is down)",
        )
    )

    s = series_of(REGION_INDEX["CN-JS"], OFFLINE)
    a, b = _slot(clock, base_earliest, 45 * MINUTE, 14.0)
    surge = round(_bend(4.0, strength), 3)
    mods.scan_factor.append(Window(s, a, b, surge))
    plan.labels.append(
        Label(
            "kpi_anomaly",
            "region",
            "CN-JS",
            "CN-JS",
            "offline",
            a,
            b,
            f"metric=scans direction=up: scans in CN-JS/offline at {surge:g}x their usual "
            f"level for {(b - a) // MINUTE} min (flash promotion traffic)",
        )
    )

    s = series_of(REGION_INDEX["CN-SC"], ECOMMERCE)
    a, b = _slot(clock, base_earliest, 60 * MINUTE, 12.5)
    orders = round(_bend(0.02, strength), 2)
    mods.order_factor.append(Window(s, a, b, orders))
    plan.labels.append(
        Label(
            "kpi_anomaly",
            "region",
            "CN-SC",
            "CN-SC",
            "ecommerce",
            a,
            b,
            f"metric=orders direction=down: orders in CN-SC/ecommerce drop to ~{orders:.0%} of "
            f"their usual level for {(b - a) // MINUTE} min (payment outage)",
        )
    )

    s = series_of(REGION_INDEX["CN-SD"], OFFLINE)
    ranked = _outlets_by_weight(world, s)
    shop = ranked[min(1, len(ranked) - 1)]
    a, b = _slot(clock, base_earliest, 30 * MINUTE, 16.0)
    plan.injectors.append(lambda w, st, c, sd: _outlet_self(w, st, c, sd, shop, a, b))

    # -- fraud kinds: any time after the first hour -----------------------------------
    f_earliest = _align(clock, clock.start_ms + min(HOUR, int(0.3 * span)))

    def at(frac: float, duration: int) -> tuple[int, int]:
        room = max(0, clock.end_ms - duration - f_earliest)
        t = _align(clock, f_earliest + int(frac * room))
        return t, min(clock.end_ms, t + duration)

    slots = {
        "dup": at(0.05, 50 * MINUTE),
        "farm_user": at(0.20, 10 * MINUTE),
        "farm_device": at(0.35, 30 * MINUTE),
        "cross": at(0.50, 55 * MINUTE),
        "travel": at(0.65, 25 * MINUTE),
    }
    plan.injectors.append(lambda w, st, c, sd: _duplicate_code(w, st, c, sd, *slots["dup"]))
    plan.injectors.append(lambda w, st, c, sd: _farm_user(w, st, c, sd, *slots["farm_user"]))
    plan.injectors.append(lambda w, st, c, sd: _farm_device(w, st, c, sd, *slots["farm_device"]))
    plan.injectors.append(lambda w, st, c, sd: _cross_region(w, st, c, sd, *slots["cross"]))
    plan.injectors.append(lambda w, st, c, sd: _travel(w, st, c, sd, *slots["travel"]))
    return plan


def inject(plan: IncidentPlan, world: World, store: EventStore, clock: Clock, seed: int) -> None:
    for k, injector in enumerate(plan.injectors):
        store.use_stream("incident", k)
        plan.labels.append(injector(world, store, clock, seed))


def labels_json(plan: IncidentPlan) -> list[dict[str, str]]:
    ordered = sorted(plan.labels, key=lambda lb: (lb.start, lb.kind, lb.entity_id))
    return [lb.to_json(f"INC-{i + 1:03d}") for i, lb in enumerate(ordered)]


# -- event helpers ---------------------------------------------------------------------


def _batch(
    world: World,
    store: EventStore,
    clock: Clock,
    region: int,
    channel: int,
    outlet: int,
    size: int,
    ship_at: int,
    rng: random.Random,
) -> int:
    """A batch of its own for the incident, shipped before the incident uses it."""
    sku = world.pick_sku(rng.random())
    b = world.batches.new(region, channel, outlet, sku, size)
    ship(world, store, b, max(clock.start_ms + 1000, ship_at), flags=FLAG_INCIDENT)
    return b


def _scan(
    world: World,
    store: EventStore,
    clock: Clock,
    s: int,
    ts: int,
    user: int,
    code: int,
    device: str,
    outlet: int,
    lat: float,
    lon: float,
    city: str,
) -> int:
    """Returns the event time actually written, or -1 if it fell past the run's end."""
    if ts >= clock.end_ms:
        return -1
    ts, f = store.stamp(ts)
    b = code >> CODE_BITS
    sku = world.batches.sku[b]
    camp = SKUS[sku].campaign
    fields: dict[str, object] = {
        "code_id": world.batches.code_id(code),
        "user_id": world.user_ids[user],
        "batch_id": world.batches.ids[b],
        "sku": SKUS[sku].sku_id,
    }
    if outlet >= 0:
        fields["outlet_id"] = world.outlets[outlet].outlet_id
    fields.update(
        {
            "device_id": device,
            "city": city,
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "campaign_id": CAMPAIGNS[camp].campaign_id,
            "variant": VARIANTS[world.variant(camp, user)],
        }
    )
    store.add(SCAN, s, ts, f, fields, user=user, code=code, flags=FLAG_INCIDENT)
    return ts


def _redeem(
    world: World,
    store: EventStore,
    clock: Clock,
    s: int,
    ts: int,
    user: int,
    code: int,
    device: str,
    outlet: int,
    cents: int,
) -> int:
    if ts >= clock.end_ms:
        return -1
    ts, f = store.stamp(ts)
    camp = SKUS[world.batches.sku[code >> CODE_BITS]].campaign
    fields: dict[str, object] = {
        "code_id": world.batches.code_id(code),
        "user_id": world.user_ids[user],
    }
    if outlet >= 0:
        fields["outlet_id"] = world.outlets[outlet].outlet_id
    fields.update(
        {
            "device_id": device,
            "amount": cents / 100,
            "campaign_id": CAMPAIGNS[camp].campaign_id,
            "variant": VARIANTS[world.variant(camp, user)],
        }
    )
    store.add(REDEMPTION, s, ts, f, fields, user=user, code=code, flags=FLAG_INCIDENT)
    return ts


def _code(b: int, k: int) -> int:
    return (b << CODE_BITS) | k


def _spread(rng: random.Random, a: int, b: int, n: int) -> list[int]:
    return sorted(a + int(rng.random() * (b - a)) for _ in range(n))


def _home(world: World, user: int, rng: random.Random) -> tuple[float, float, str]:
    return (
        world.user_lat[user] + rng.gauss(0.0, 0.0008),
        world.user_lon[user] + rng.gauss(0.0, 0.0008),
        world.cities[world.user_city[user]][1].name,
    )


def _city_index(world: World, region: int, name: str | None = None) -> int:
    for ci in world.region_cities[region]:
        if name is None or world.cities[ci][1].name == name:
            return ci
    return world.region_cities[region][0]


# -- the incidents -----------------------------------------------------------------------


def _outlet_self(
    world: World, store: EventStore, clock: Clock, seed: int, shop: int, a: int, b: int
) -> Label:
    rng = random.Random(f"{seed}:incident:outlet_self")
    o = world.outlets[shop]
    s = series_of(o.region, o.channel)
    cum = world.series_outlet_cum[s]
    share = o.weight / float(cum[-1])
    rate = scan_rate(world, clock, s)
    lo, hi = clock.minute_of(a), clock.minute_of(b - 1)
    usual = float(rate[lo : hi + 1].sum()) * share * REDEEM_P[o.channel]
    extra = max(25, round(9 * usual))
    batch = _batch(world, store, clock, o.region, o.channel, shop, extra + 20, a - 90 * MINUTE, rng)
    city = world.cities[o.city][1]
    clerks = [
        world.new_user(o.city, city.lat + rng.gauss(0, 0.01), city.lon + rng.gauss(0, 0.01))
        for _ in range(3)
    ]
    till = world.new_device()
    own = [world.device_id(u, 0) for u in clerks]
    for j, rts in enumerate(_spread(rng, a + 40_000, b, extra)):
        k = rng.randrange(len(clerks))
        u = clerks[k]
        dev = till if rng.random() < 0.85 else own[k]
        code = _code(batch, j + 1)
        sts = rts - rng.randint(5_000, 40_000)
        lat, lon = world.user_lat[u] + rng.gauss(0, 1e-4), world.user_lon[u] + rng.gauss(0, 1e-4)
        _scan(world, store, clock, s, sts, u, code, dev, shop, lat, lon, city.name)
        _redeem(world, store, clock, s, rts, u, code, dev, shop, rng.choice(REWARD_CENTS))
    return Label(
        "outlet_self_redemption",
        "outlet",
        o.outlet_id,
        REGIONS[o.region].code,
        CHANNELS[o.channel],
        a,
        b,
        f"outlet {o.outlet_id} redeems {extra} extra rewards in {(b - a) // MINUTE} min "
        f"(~10x its usual {usual:.1f}), ~85% from one till device, via 3 staff accounts",
    )


def _duplicate_code(
    world: World, store: EventStore, clock: Clock, seed: int, a: int, b: int
) -> Label:
    rng = random.Random(f"{seed}:incident:duplicate_code")
    r, c = REGION_INDEX["CN-HB"], COMMUNITY
    s = series_of(r, c)
    outlet = rng.choice(world.series_outlets[s])
    batch = _batch(world, store, clock, r, c, outlet, 200, a - rng.randint(1, 3) * HOUR, rng)
    code = _code(batch, rng.randint(1, 200))
    lo, hi = world.region_range[r]
    users = rng.sample(range(lo, hi), min(hi - lo, rng.randint(10, 16)))
    times = _spread(rng, a, b, len(users))
    times[0] = a
    second = times[1]
    for i, (u, t) in enumerate(zip(users, times, strict=True)):
        lat, lon, city = _home(world, u, rng)
        dev = world.device_id(u, 0)
        written = _scan(world, store, clock, s, t, u, code, dev, outlet, lat, lon, city)
        if i == 1 and written >= 0:
            second = written
        if i == 0:
            _redeem(world, store, clock, s, t + 180_000, u, code, dev, outlet, 188)
    return Label(
        "duplicate_code",
        "code",
        world.batches.code_id(code),
        "CN-HB",
        "community",
        second,  # the first scan by someone other than the buyer
        b,
        f"code {world.batches.code_id(code)} scanned by {len(users)} distinct users on "
        f"{len(users)} devices across CN-HB within {(b - a) // MINUTE} min (leaked or "
        f"counterfeit code)",
    )


def _farm_user(world: World, store: EventStore, clock: Clock, seed: int, a: int, b: int) -> Label:
    rng = random.Random(f"{seed}:incident:farm_user")
    r, c = REGION_INDEX["CN-SH"], ECOMMERCE
    s = series_of(r, c)
    n = rng.randint(32, 42)
    batch = _batch(world, store, clock, r, c, -1, 100, a - rng.randint(1, 2) * HOUR, rng)
    ci = _city_index(world, r)
    city = world.cities[ci][1]
    u = world.new_user(ci, city.lat + rng.gauss(0, 0.02), city.lon + rng.gauss(0, 0.02))
    dev = world.device_id(u, 0)
    end = a + min(b - a, 9 * MINUTE)
    for k, t in enumerate(_spread(rng, a, end, n)):
        code = _code(batch, k + 1)
        lat, lon, name = _home(world, u, rng)
        _scan(world, store, clock, s, t, u, code, dev, -1, lat, lon, name)
        if rng.random() < 0.85:
            cents = rng.choice(REWARD_CENTS)
            _redeem(
                world, store, clock, s, t + rng.randint(20_000, 90_000), u, code, dev, -1, cents
            )
    return Label(
        "reward_farming",
        "user",
        world.user_ids[u],
        "CN-SH",
        "ecommerce",
        a,
        b,
        f"user {world.user_ids[u]} scans {n} distinct codes in {(end - a) // MINUTE} min and "
        f"redeems most of them within seconds (reward farming)",
    )


def _farm_device(world: World, store: EventStore, clock: Clock, seed: int, a: int, b: int) -> Label:
    rng = random.Random(f"{seed}:incident:farm_device")
    r, c = REGION_INDEX["CN-GD"], ECOMMERCE
    s = series_of(r, c)
    ci = _city_index(world, r, "深圳")
    city = world.cities[ci][1]
    dev = world.new_device()
    n_users = rng.randint(18, 24)
    batch = _batch(world, store, clock, r, c, -1, 100, a - rng.randint(1, 3) * HOUR, rng)
    lat0, lon0 = city.lat + rng.gauss(0, 0.02), city.lon + rng.gauss(0, 0.02)
    k = 0
    end = a + min(b - a, 25 * MINUTE)
    times = _spread(rng, a, end, n_users)
    for t in times:
        u = world.new_user(ci, lat0, lon0)
        for j in range(1 + (rng.random() < 0.4)):
            k += 1
            code = _code(batch, k)
            st = t + j * rng.randint(15_000, 40_000)
            lat, lon = lat0 + rng.gauss(0, 2e-4), lon0 + rng.gauss(0, 2e-4)
            _scan(world, store, clock, s, st, u, code, dev, -1, lat, lon, city.name)
            if rng.random() < 0.9:
                rt = st + rng.randint(15_000, 60_000)
                _redeem(world, store, clock, s, rt, u, code, dev, -1, rng.choice(REWARD_CENTS))
    return Label(
        "reward_farming",
        "device",
        dev,
        "CN-GD",
        "ecommerce",
        a,
        b,
        f"device {dev} used by {n_users} distinct accounts to scan {k} codes within "
        f"{(end - a) // MINUTE} min (phone farm)",
    )


def _cross_region(
    world: World, store: EventStore, clock: Clock, seed: int, a: int, b: int
) -> Label:
    rng = random.Random(f"{seed}:incident:cross_region")
    home_r = REGION_INDEX["CN-BJ"]
    r, c = REGION_INDEX["CN-SH"], OFFLINE
    s = series_of(r, c)
    src_outlet = rng.choice(world.series_outlets[series_of(home_r, OFFLINE)])
    batch = _batch(
        world, store, clock, home_r, OFFLINE, src_outlet, 300, a - rng.randint(2, 4) * HOUR, rng
    )
    shops = rng.sample(world.series_outlets[s], min(2, len(world.series_outlets[s])))
    n = rng.randint(18, 26)
    codes = rng.sample(range(1, 301), n)
    # local shoppers of the shops' cities buy the diverted goods
    candidates = sorted({u for o in shops for u in range(*world.city_range[world.outlets[o].city])})
    if len(candidates) < 2 * n:
        candidates = list(range(*world.region_range[r]))
    buyers = rng.sample(candidates, n)
    for t, k, u in zip(_spread(rng, a, b, n), codes, buyers, strict=True):
        shop = rng.choice(shops)
        lat, lon, city = _home(world, u, rng)
        dev = world.device_id(u, 0)
        code = _code(batch, k)
        _scan(world, store, clock, s, t, u, code, dev, shop, lat, lon, city)
        if rng.random() < REDEEM_P[OFFLINE]:
            rt = t + int(300_000 * math.exp(0.8 * rng.gauss(0, 1)))
            _redeem(world, store, clock, s, rt, u, code, dev, shop, rng.choice(REWARD_CENTS))
    bid = world.batches.ids[batch]
    return Label(
        "cross_region_scan",
        "batch",
        bid,
        "CN-SH",
        "offline",
        a,
        b,
        f"batch {bid} was shipped to CN-BJ/offline ({world.outlets[src_outlet].outlet_id}) but "
        f"{n} of its codes are scanned in CN-SH within {(b - a) // MINUTE} min (channel "
        f"diversion)",
    )


def _travel(world: World, store: EventStore, clock: Clock, seed: int, a: int, b: int) -> Label:
    rng = random.Random(f"{seed}:incident:travel")
    bj, gd = REGION_INDEX["CN-BJ"], REGION_INDEX["CN-GD"]
    home = _city_index(world, bj, "朝阳区")
    hc = world.cities[home][1]
    u = world.new_user(home, hc.lat + rng.gauss(0, 0.01), hc.lon + rng.gauss(0, 0.01))
    dev = world.device_id(u, 0)
    s1 = series_of(bj, ECOMMERCE)
    b1 = _batch(world, store, clock, bj, ECOMMERCE, -1, 100, a - 5 * HOUR, rng)
    gz = _city_index(world, gd, "广州")
    s2 = series_of(gd, COMMUNITY)
    gz_shops = [o for o in world.series_outlets[s2] if world.outlets[o].city == gz]
    shop = rng.choice(gz_shops or world.series_outlets[s2])
    b2 = _batch(world, store, clock, gd, COMMUNITY, shop, 100, a - 5 * HOUR, rng)
    gap = min(rng.randint(10 * MINUTE, 20 * MINUTE), max(60_000, (b - a) // 2))
    earlier = a - rng.randint(2 * HOUR, 4 * HOUR)
    if earlier > clock.start_ms + MINUTE:
        lat, lon, name = _home(world, u, rng)
        _scan(world, store, clock, s1, earlier, u, _code(b1, 1), dev, -1, lat, lon, name)
    lat, lon, name = _home(world, u, rng)
    _scan(world, store, clock, s1, a, u, _code(b1, 2), dev, -1, lat, lon, name)
    g = world.cities[gz][1]
    t2 = a + gap
    written = _scan(
        world,
        store,
        clock,
        s2,
        t2,
        u,
        _code(b2, 1),
        dev,
        shop,
        g.lat + rng.gauss(0, 0.01),
        g.lon + rng.gauss(0, 0.01),
        g.name,
    )
    if written >= 0:
        t2 = written
    km = _haversine_km(lat, lon, g.lat, g.lon)
    return Label(
        "impossible_travel",
        "user",
        world.user_ids[u],
        "",
        "",
        t2,  # the scan that could not have been reached; the one at home was ordinary
        min(clock.end_ms, t2 + MINUTE),
        f"user {world.user_ids[u]} scans in Beijing ({name}) and {gap // MINUTE} min later in "
        f"Guangzhou, {km:.0f} km away (CN-BJ/ecommerce -> CN-GD/community)",
    )


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2 - lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return float(2 * 6371.0 * np.arcsin(np.sqrt(h)))

"""Geography, catalogue and the seeded population the simulated stream is drawn from.

Everything random here comes from one numpy Generator derived from the seed, so the
world (and therefore every id in the stream) is the same whether incidents are
injected or not: a labelled run and a clean run differ only where incidents act.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CHANNELS: tuple[str, ...] = ("ecommerce", "offline", "community")
ECOMMERCE, OFFLINE, COMMUNITY = 0, 1, 2
CHANNEL_TAGS = ("ECM", "OFF", "COM")

VARIANTS: tuple[str, str] = ("control", "treatment")

_MASK64 = (1 << 64) - 1
CODE_BITS = 20
"""Code keys pack (batch index, code number); batches never exceed 2**20 codes."""


@dataclass(frozen=True)
class City:
    name: str
    lat: float
    lon: float
    weight: float
    spread: float = 0.04
    """Std-dev in degrees of users' home points around the centre (~4 km)."""


@dataclass(frozen=True)
class Region:
    code: str
    abbr: str
    weight: float
    channel_shares: tuple[float, float, float]
    cities: tuple[City, ...]


REGIONS: tuple[Region, ...] = (
    Region(
        "CN-SD",
        "SD",
        1.10,
        (0.42, 0.33, 0.25),
        (
            City("济南", 36.6512, 117.1201, 1.0),
            City("青岛", 36.0671, 120.3826, 1.2),
            City("烟台", 37.4638, 121.4479, 0.6),
            City("潍坊", 36.7069, 119.1618, 0.6),
            City("临沂", 35.1041, 118.3564, 0.5),
        ),
    ),
    Region(
        "CN-GD",
        "GD",
        1.60,
        (0.45, 0.35, 0.20),
        (
            City("广州", 23.1291, 113.2644, 1.3),
            City("深圳", 22.5431, 114.0579, 1.3),
            City("东莞", 23.0207, 113.7518, 0.6),
            City("佛山", 23.0215, 113.1214, 0.6),
            City("汕头", 23.3541, 116.6820, 0.3),
        ),
    ),
    Region(
        "CN-ZJ",
        "ZJ",
        1.20,
        (0.47, 0.33, 0.20),
        (
            City("杭州", 30.2741, 120.1551, 1.3),
            City("宁波", 29.8683, 121.5440, 0.9),
            City("温州", 27.9943, 120.6994, 0.7),
            City("金华", 29.0790, 119.6474, 0.5),
        ),
    ),
    Region(
        "CN-JS",
        "JS",
        1.25,
        (0.44, 0.36, 0.20),
        (
            City("南京", 32.0603, 118.7969, 1.1),
            City("苏州", 31.2990, 120.5853, 1.2),
            City("无锡", 31.4912, 120.3119, 0.7),
            City("徐州", 34.2044, 117.2858, 0.5),
        ),
    ),
    Region(
        "CN-SC",
        "SC",
        0.90,
        (0.38, 0.42, 0.20),
        (
            City("成都", 30.5728, 104.0668, 1.6),
            City("绵阳", 31.4675, 104.6796, 0.4),
            City("南充", 30.8373, 106.1107, 0.3),
        ),
    ),
    Region(
        "CN-BJ",
        "BJ",
        0.70,
        (0.55, 0.28, 0.17),
        (
            City("朝阳区", 39.9215, 116.4431, 1.0, 0.03),
            City("海淀区", 39.9593, 116.2982, 0.9, 0.03),
            City("丰台区", 39.8585, 116.2870, 0.5, 0.03),
            City("通州区", 39.9025, 116.6566, 0.4, 0.03),
        ),
    ),
    Region(
        "CN-SH",
        "SH",
        0.80,
        (0.55, 0.28, 0.17),
        (
            City("浦东新区", 31.2215, 121.5440, 1.2, 0.03),
            City("闵行区", 31.1128, 121.3817, 0.7, 0.03),
            City("徐汇区", 31.1885, 121.4365, 0.5, 0.03),
            City("嘉定区", 31.3747, 121.2655, 0.4, 0.03),
        ),
    ),
    Region(
        "CN-HB",
        "HB",
        0.65,
        (0.38, 0.42, 0.20),
        (
            City("武汉", 30.5928, 114.3055, 1.5),
            City("宜昌", 30.6919, 111.2865, 0.4),
            City("襄阳", 32.0090, 112.1225, 0.4),
        ),
    ),
)
REGION_INDEX = {r.code: i for i, r in enumerate(REGIONS)}
N_SERIES = len(REGIONS) * len(CHANNELS)


def series_of(region: int, channel: int) -> int:
    return region * len(CHANNELS) + channel


def series_names() -> list[tuple[str, str]]:
    return [(r.code, c) for r in REGIONS for c in CHANNELS]


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    treatment_delta: float
    """True absolute uplift of the treatment on a scan's redemption probability."""
    description: str


CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign(
        "CMP-2611-REDPACK",
        0.04,
        "scan-to-win red packet; treatment shows the amount before the claim button",
    ),
    Campaign(
        "CMP-2611-LUCKYDRAW",
        0.02,
        "lucky-draw wheel; treatment adds a progress bar towards a guaranteed prize",
    ),
)


@dataclass(frozen=True)
class Sku:
    sku_id: str
    price_cents: int
    campaign: int
    weight: float


SKUS: tuple[Sku, ...] = (
    Sku("SKU-BEER-330ML", 450, 0, 0.22),
    Sku("SKU-BEER-500ML", 600, 0, 0.16),
    Sku("SKU-BEER-24PK", 8900, 0, 0.06),
    Sku("SKU-TEA-500ML", 350, 0, 0.14),
    Sku("SKU-WATER-550ML", 200, 0, 0.05),
    Sku("SKU-MILK-250X12", 4590, 1, 0.12),
    Sku("SKU-YOGURT-6PK", 1990, 1, 0.10),
    Sku("SKU-SNACK-MIX", 1280, 1, 0.12),
    Sku("SKU-BAIJIU-500ML", 26800, 1, 0.03),
)


@dataclass(frozen=True)
class Outlet:
    outlet_id: str
    region: int
    channel: int
    city: int
    """Global city index (see World.cities)."""
    weight: float


def mix64(x: int) -> int:
    """splitmix64 finaliser: a bijection on 64-bit ints, so distinct inputs give distinct ids."""
    z = x & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def mix64_many(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """`mix64` over an array (uint64 arithmetic wraps, as the masks do above)."""
    z = x.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hex16_many(z: npt.NDArray[np.uint64]) -> list[str]:
    """Each value as 16 lowercase hex digits, like f"{v:016x}" but in bulk."""
    h = z.astype(">u8").tobytes().hex()
    return [h[i : i + 16] for i in range(0, len(h), 16)]


class Batches:
    """Every batch of codes in the run, shipped or not, in creation order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.region: list[int] = []
        self.channel: list[int] = []
        self.outlet: list[int] = []
        self.sku: list[int] = []
        self.size: list[int] = []

    def new(self, region: int, channel: int, outlet: int, sku: int, size: int) -> int:
        idx = len(self.ids)
        self.ids.append(f"B{idx + 1:05d}")
        self.region.append(region)
        self.channel.append(channel)
        self.outlet.append(outlet)
        self.sku.append(sku)
        self.size.append(size)
        return idx

    def code_id(self, key: int) -> str:
        return f"{self.ids[key >> CODE_BITS]}-{key & ((1 << CODE_BITS) - 1):06d}"


class World:
    """The population. Users of a city occupy one contiguous index range."""

    USERS_PER_WEIGHT = 40_000
    OFFLINE_OUTLETS_PER_WEIGHT = 60
    COMMUNITY_OUTLETS_PER_WEIGHT = 25

    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        rng = np.random.default_rng([seed & _MASK64, 1])
        self.cities: list[tuple[int, City]] = [
            (ri, c) for ri, r in enumerate(REGIONS) for c in r.cities
        ]
        self.region_cities: list[list[int]] = [[] for _ in REGIONS]
        for ci, (ri, _) in enumerate(self.cities):
            self.region_cities[ri].append(ci)

        # users
        self.user_ids: list[str] = []
        self.user_city: list[int] = []
        self.user_lat: list[float] = []
        self.user_lon: list[float] = []
        self.user_ndev: list[int] = []
        self.city_range: list[tuple[int, int]] = []
        city_weights: list[npt.NDArray[np.float64]] = []
        self.region_range: list[tuple[int, int]] = []
        self.region_cum: list[npt.NDArray[np.float64]] = []
        self.city_cum: list[npt.NDArray[np.float64]] = []
        for ri, region in enumerate(REGIONS):
            n_region = max(40, round(self.USERS_PER_WEIGHT * region.weight * scale))
            total_w = sum(c.weight for c in region.cities)
            r_lo = len(self.user_ids)
            for ci in self.region_cities[ri]:
                city = self.cities[ci][1]
                n = max(8, round(n_region * city.weight / total_w))
                lo = len(self.user_ids)
                lat = city.lat + rng.normal(0.0, city.spread, n)
                lon = city.lon + rng.normal(0.0, city.spread, n)
                self.user_lat.extend(lat.tolist())
                self.user_lon.extend(lon.tolist())
                self.user_ndev.extend((1 + (rng.random(n) < 0.3)).tolist())
                self.user_city.extend([ci] * n)
                self.user_ids.extend(f"U{i:08d}" for i in range(lo + 1, lo + n + 1))
                w = rng.lognormal(0.0, 1.0, n)
                city_weights.append(w)
                self.city_range.append((lo, lo + n))
                self.city_cum.append(np.cumsum(w))
            self.region_range.append((r_lo, len(self.user_ids)))
            self.region_cum.append(
                np.cumsum(np.concatenate([city_weights[ci] for ci in self.region_cities[ri]]))
            )
        self.n_background_users = len(self.user_ids)
        # personal devices of the background users, two slots each (built in bulk: a
        # million f-strings would cost more than the rest of the world together)
        slots = np.arange(2 * self.n_background_users, dtype=np.uint64)
        self.devices = hex16_many(mix64_many(slots + np.uint64((seed << 41) & _MASK64)))

        # outlets
        self.outlets: list[Outlet] = []
        self.series_outlets: list[list[int]] = [[] for _ in range(N_SERIES)]
        self.series_outlet_cum: list[npt.NDArray[np.float64]] = [
            np.zeros(0) for _ in range(N_SERIES)
        ]
        root = math.sqrt(scale)
        for ri, region in enumerate(REGIONS):
            cw = np.array([self.cities[ci][1].weight for ci in self.region_cities[ri]])
            for ch, per_w, floor in (
                (OFFLINE, self.OFFLINE_OUTLETS_PER_WEIGHT, 4),
                (COMMUNITY, self.COMMUNITY_OUTLETS_PER_WEIGHT, 3),
            ):
                n = max(floor, round(per_w * region.weight * root))
                picks = rng.choice(len(cw), size=n, p=cw / cw.sum())
                weights = rng.lognormal(0.0, 0.7, n)
                s = series_of(ri, ch)
                for k in range(n):
                    oid = f"{region.abbr}-{CHANNEL_TAGS[ch]}-{k + 1:04d}"
                    self.series_outlets[s].append(len(self.outlets))
                    self.outlets.append(
                        Outlet(
                            oid, ri, ch, self.region_cities[ri][int(picks[k])], float(weights[k])
                        )
                    )
                self.series_outlet_cum[s] = np.cumsum(weights)

        # numpy views of the background population for bulk draws
        nbg = self.n_background_users
        self.bg_lat = np.asarray(self.user_lat[:nbg])
        self.bg_lon = np.asarray(self.user_lon[:nbg])
        self.bg_ndev = np.asarray(self.user_ndev[:nbg], dtype=np.int64)
        self.outlet_city = np.asarray([o.city for o in self.outlets], dtype=np.int64)

        self.sku_cum = np.cumsum([s.weight for s in SKUS])
        self.batches = Batches()
        self.variant_bits = bytearray(b"\xff" * len(self.user_ids))
        """Per user, bit k = arm in campaign k; 255 = not computed yet (hashing is lazy)."""
        self._seed_key = str(seed).encode()[:64]
        self._n_extra_devices = 0

    # -- ids -----------------------------------------------------------------------------
    def device_id(self, user: int, k: int) -> str:
        return f"{mix64((user << 1) + k + (self.seed << 41)):016x}"

    def new_device(self) -> str:
        """A device owned by nobody in the population (emulators, shop phones)."""
        self._n_extra_devices += 1
        return f"{mix64((1 << 40) + self._n_extra_devices + (self.seed << 41)):016x}"

    def new_user(self, city: int, lat: float | None = None, lon: float | None = None) -> int:
        """A user with no background activity, so incident behaviour stays isolated."""
        c = self.cities[city][1]
        idx = len(self.user_ids)
        self.user_ids.append(f"U{idx + 1:08d}")
        self.user_city.append(city)
        self.user_lat.append(c.lat if lat is None else lat)
        self.user_lon.append(c.lon if lon is None else lon)
        self.user_ndev.append(1)
        return idx

    def variant(self, campaign: int, user: int) -> int:
        """Seeded, stateless assignment: hash(seed, campaign, user) decides the arm."""
        bits = self.variant_bits[user] if user < len(self.variant_bits) else 255
        if bits == 255:
            bits = self._assign(user)
        return (bits >> campaign) & 1

    def _assign(self, user: int) -> int:
        bits = 0
        for ci, camp in enumerate(CAMPAIGNS):
            msg = f"{camp.campaign_id}:{self.user_ids[user]}".encode()
            h = hashlib.blake2b(msg, digest_size=8, key=self._seed_key).digest()
            bits |= (h[0] & 1) << ci
        if user >= len(self.variant_bits):
            self.variant_bits.extend(b"\xff" * (user + 1 - len(self.variant_bits)))
        self.variant_bits[user] = bits
        return bits

    def city_of_user(self, user: int) -> City:
        return self.cities[self.user_city[user]][1]

    def pick_sku(self, u: float) -> int:
        return int(np.searchsorted(self.sku_cum, u * self.sku_cum[-1], side="right"))


ASSIGNMENT_RULE = (
    "variant = 'treatment' if blake2b(f'{campaign_id}:{user_id}', digest_size=8, "
    "key=str(seed).encode()).digest()[0] & 1 else 'control'"
)

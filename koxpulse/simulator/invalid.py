"""Invalid input lines: every way the contract lets a message be rejected.

Several of them are otherwise-perfect events (an oversized line, an event inside an
array, a valid event with one bad UTF-8 byte, a `quantity` of `true`): a consumer that
is lenient in the wrong place will count them, and the ground truth will show it.
Each carries an event_id no valid event uses, so it can never be mistaken for a copy.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from .events import EventStore
from .timefmt import SECOND_ONLY, choose_format, local_naive
from .world import CAMPAIGNS, CHANNELS, CODE_BITS, REGIONS, SKUS, VARIANTS, World

KINDS: tuple[str, ...] = (
    "not_json",
    "truncated_json",
    "not_object:array",
    "not_object:number",
    "invalid_utf8",
    "empty_line",
    "missing_type",
    "unknown_type",
    "missing_field:event_id",
    "missing_field:ts",
    "missing_field:region",
    "missing_field:channel",
    "missing_field:scan.code_id",
    "missing_field:scan.user_id",
    "missing_field:redemption.code_id",
    "missing_field:redemption.user_id",
    "missing_field:order.order_id",
    "missing_field:order.user_id",
    "missing_field:order.amount",
    "missing_field:shipment.batch_id",
    "missing_field:shipment.codes",
    "wrong_type:event_id",
    "wrong_type:scan.user_id",
    "wrong_type:order.amount",
    "wrong_type:order.quantity",
    "wrong_type:shipment.codes",
    "out_of_range:event_id",
    "too_long:event_id",
    "out_of_range:region",
    "too_long:region",
    "out_of_range:order.amount",
    "out_of_range:redemption.amount",
    "out_of_range:order.quantity",
    "out_of_range:shipment.codes",
    "out_of_range:scan.lat",
    "out_of_range:scan.lon",
    "ts_no_offset",
    "ts_garbage",
    "ts_numeric_string",
    "oversized",
)
# beyond one of each, malformed transport is the common failure in practice
_EXTRA_WEIGHTS = {"not_json": 6.0, "truncated_json": 6.0, "ts_no_offset": 2.0}
RATE = 0.003
OVERSIZED_BYTES = 70_000
_enc = msgspec.json.Encoder().encode


def plan_kinds(n_valid_lines: int, rng: random.Random) -> list[str]:
    """One of every kind, then more up to ~0.3 % of the stream, in random order."""
    kinds = list(KINDS)
    extra = max(0, round(RATE * n_valid_lines) - len(kinds))
    weights = [_EXTRA_WEIGHTS.get(k, 1.0) for k in KINDS]
    kinds.extend(rng.choices(KINDS, weights=weights, k=extra))
    rng.shuffle(kinds)
    return kinds


class InvalidFactory:
    def __init__(self, world: World, store: EventStore, rng: random.Random, first_seq: int):
        self.world = world
        self.store = store
        self.rng = rng
        self.seq = first_seq

    def _eid(self) -> str:
        self.seq += 1
        return self.store.event_id(self.seq)

    def _ts(self, ts: int) -> str | int:
        f = choose_format(self.rng.random())
        if f in SECOND_ONLY:
            ts -= ts % 1000
        return self.store.render_ts(ts, f)

    def _base(self, etype: str, ts: int) -> dict[str, Any]:
        rng, w = self.rng, self.world
        r = rng.randrange(len(REGIONS))
        c = rng.randrange(len(CHANNELS))
        lo, hi = w.region_range[r]
        u = rng.randrange(lo, hi)
        d: dict[str, Any] = {
            "event_id": self._eid(),
            "type": etype,
            "ts": self._ts(ts),
            "region": REGIONS[r].code,
            "channel": CHANNELS[c],
        }
        nb = len(w.batches.ids)
        b = rng.randrange(nb) if nb else 0
        code = (b << CODE_BITS) | rng.randint(1, max(1, w.batches.size[b] if nb else 100))
        code_id = w.batches.code_id(code) if nb else "B00001-000001"
        sku = SKUS[w.batches.sku[b]] if nb else SKUS[0]
        camp = CAMPAIGNS[sku.campaign].campaign_id
        variant = VARIANTS[rng.randrange(2)]
        if etype == "scan":
            city = w.cities[w.user_city[u]][1]
            d.update(
                {
                    "code_id": code_id,
                    "user_id": w.user_ids[u],
                    "batch_id": w.batches.ids[b] if nb else "B00001",
                    "sku": sku.sku_id,
                    "device_id": w.device_id(u, 0),
                    "city": city.name,
                    "lat": round(w.user_lat[u], 6),
                    "lon": round(w.user_lon[u], 6),
                    "campaign_id": camp,
                    "variant": variant,
                }
            )
        elif etype == "redemption":
            d.update(
                {
                    "code_id": code_id,
                    "user_id": w.user_ids[u],
                    "device_id": w.device_id(u, 0),
                    "amount": rng.choice((0.88, 1.0, 1.88, 2.0)),
                    "campaign_id": camp,
                    "variant": variant,
                }
            )
        elif etype == "order":
            qty = rng.randint(1, 6)
            d.update(
                {
                    "order_id": f"ORD{rng.randrange(10**10):011d}",
                    "user_id": w.user_ids[u],
                    "amount": round(sku.price_cents * qty / 100, 2),
                    "quantity": qty,
                    "sku": sku.sku_id,
                    "campaign_id": camp,
                    "variant": variant,
                }
            )
        else:
            d.update({"batch_id": f"B{nb + 1 + rng.randrange(900):05d}", "codes": 500})
            d["sku"] = sku.sku_id
        return d

    def _any(self, ts: int) -> dict[str, Any]:
        return self._base(self.rng.choice(("scan", "redemption", "order", "shipment")), ts)

    def make(self, kind: str, ts: int) -> bytes:
        rng = self.rng
        cat, _, subject = kind.partition(":")
        etype, _, fname = subject.partition(".")
        if kind == "empty_line":
            return b""
        if kind == "not_json":
            d = self._any(ts)
            style = rng.randrange(5)
            if style == 0:
                return " ".join(f"{k}={v}" for k, v in d.items()).encode()
            if style == 1:
                return repr(d).encode()
            if style == 2:
                return b"<html><head><title>502 Bad Gateway</title></head></html>"
            if style == 3:
                return _enc(d)[:-1] + b",}"
            return ",".join(str(v) for v in d.values()).encode()
        if kind == "truncated_json":
            text = _enc(self._any(ts)).decode()
            return text[: rng.randint(8, len(text) - 2)].encode()
        if kind == "not_object:array":
            return b"[" + _enc(self._any(ts)) + b"]"
        if kind == "not_object:number":
            return rng.choice((str(ts), "42", "3.5")).encode()
        if kind == "invalid_utf8":
            d = self._base("scan", ts)
            d["city"] = "@@CITY@@"
            bad = rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xe6\xb5", b"\x80abc"))
            return _enc(d).replace(b"@@CITY@@", bad)
        if kind == "oversized":
            d = self._base("scan", ts)
            d["debug_blob"] = "A" * OVERSIZED_BYTES
            return _enc(d)
        if cat in ("missing_type", "unknown_type"):
            d = self._any(ts)
            if cat == "missing_type":
                del d["type"]
            else:
                d["type"] = rng.choice(("refund", "click", "page_view", "coupon_issue"))
            return _enc(d)
        if cat.startswith("ts_"):
            d = self._any(ts)
            if cat == "ts_no_offset":
                d["ts"] = local_naive(ts, 480, with_ms=rng.random() < 0.5)
            elif cat == "ts_garbage":
                d["ts"] = rng.choice(
                    ("yesterday", "N/A", "", "2026-11-31T10:00:00Z", "2026-11-16 25:61:00+08:00")
                )
            else:
                d["ts"] = str(ts) if rng.random() < 0.5 else str(ts // 1000)
            return _enc(d)
        if fname:  # a type-specific field
            d = self._base(etype, ts)
            field = fname
        else:
            d = self._any(ts)
            field = etype
        if cat == "missing_field":
            del d[field]
        elif cat == "wrong_type":
            d[field] = {
                "event_id": 123456789,
                "user_id": 10234567,
                "amount": f"{rng.randint(1, 99)}.50",
                "quantity": True,
                "codes": 3.5,
            }[field]
        elif cat == "out_of_range":
            d[field] = {
                "event_id": "",
                "region": "",
                "amount": -round(rng.uniform(0.5, 50.0), 2),
                "quantity": rng.choice((0, -1)),
                "codes": rng.choice((0, -100)),
                "lat": rng.choice((123.0, -91.5)),
                "lon": rng.choice((200.0, -180.5)),
            }[field]
        elif cat == "too_long":
            if field == "event_id":
                d[field] = (d["event_id"].replace("-", "") * 5)[:129]
            else:
                d[field] = d["region"] + "-" + "X" * rng.randint(61, 80)
        else:  # pragma: no cover - KINDS and this function are kept in step
            raise ValueError(kind)
        return _enc(d)

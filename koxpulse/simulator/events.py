"""The in-memory record of every valid event the simulator emits.

Each event is serialised once, at creation, and its facts (event time, type, key, user,
code, amount) are kept in compact arrays next to the bytes. The ground truth is computed
from those arrays, never by reading the file back, so a parsing bug in the pipeline
cannot hide behind the same bug in its test oracle.
"""

from __future__ import annotations

import random
from array import array
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from .timefmt import (
    SECOND_ONLY,
    TsFormatter,
    choose_format,
    choose_formats,
    floor_for_formats,
    render_many,
)
from .world import CHANNELS, REGIONS, mix64, mix64_many

SCAN, REDEMPTION, ORDER, SHIPMENT = 0, 1, 2, 3
TYPE_NAMES: tuple[str, ...] = ("scan", "redemption", "order", "shipment")
FLAG_INCIDENT = 1
FLAG_PINNED = 2
"""Delivered exactly at its event time (initial shipments must precede every scan)."""

_SERIES_FIELDS = [(r.code, c) for r in REGIONS for c in CHANNELS]

# Unknown fields some producers add; consumers must ignore them.
_EXTRAS: tuple[tuple[str, Any], ...] = (
    ("app_ver", "8.0.49"),
    ("sdk", "mp-weixin"),
    ("client_ip", "10.23.7.41"),
    ("ext", {"src": "poster", "ab": 1}),
    ("retry", 0),
    ("tags", ["promo", "q4"]),
    ("geo_accuracy_m", 35.0),
)


class EventStore:
    def __init__(self, seed: int) -> None:
        self._salt = mix64(seed * 0x9E3779B1 + 12345)
        self.seed = seed
        self.lines: list[bytes] = []
        self.ts = array("q")
        self.meta = array("q")
        """flags << 12 | type << 8 | series: one append instead of three on the hot path."""
        self.user = array("q")
        self.code = array("q")
        self.cents = array("q")
        self._fmt = TsFormatter()
        self.rng = random.Random(f"{seed}:store")
        self._rand = self.rng.random
        self._ids: list[str] = []
        self._ids_base = 0
        self._ids_len = 0
        self._n = 0
        self.order_no = 0
        # msgspec rather than orjson: same output, but orjson's per-call buffer left
        # ~4 KiB of heap behind each of a million small lines
        self._encode = msgspec.json.Encoder().encode

    def use_stream(self, label: str, *parts: int) -> None:
        """Switch to an independent random stream, so one part of the run changing size
        (an incident in one series) does not reshuffle the formatting of all the others."""
        self.rng = random.Random(f"{self.seed}:{label}:{':'.join(map(str, parts))}")
        self._rand = self.rng.random

    def __len__(self) -> int:
        return self._n

    def event_id(self, seq: int) -> str:
        a = mix64(seq + self._salt)
        b = mix64(a ^ 0x5DEECE66D)
        s = f"{a:016x}{b:016x}"
        return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"

    def _refill_ids(self) -> None:
        """`event_id` for the next block of sequence numbers, computed in bulk."""
        first = self._n
        n = 16_384
        seq = np.arange(first, first + n, dtype=np.uint64) + np.uint64(self._salt)
        a = mix64_many(seq)
        b = mix64_many(a ^ np.uint64(0x5DEECE66D))
        hexes = np.frombuffer(
            np.stack([a, b], axis=1).astype(">u8").tobytes().hex().encode(), dtype=np.uint8
        ).reshape(n, 32)
        out = np.full((n, 36), ord("-"), dtype=np.uint8)
        out[:, 0:8] = hexes[:, 0:8]
        out[:, 9:13] = hexes[:, 8:12]
        out[:, 14:18] = hexes[:, 12:16]
        out[:, 19:23] = hexes[:, 16:20]
        out[:, 24:36] = hexes[:, 20:32]
        text = out.tobytes().decode()
        self._ids = [text[i : i + 36] for i in range(0, 36 * n, 36)]
        self._ids_base = first
        self._ids_len = n

    def next_order_id(self) -> str:
        self.order_no += 1
        return f"ORD{(self.order_no * 7919 + 1_000_003) % 10_000_000_019:011d}"

    def stamp(self, ts: int) -> tuple[int, int]:
        """Pick a serialisation format; second-precision producers floor their clocks."""
        f = choose_format(self.rng.random())
        if f in SECOND_ONLY:
            ts -= ts % 1000
        return ts, f

    def stamp_many(
        self, ts: npt.NDArray[np.int64], u: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], list[str | int]]:
        """`stamp` + render in bulk, with the format draws `u` from the caller's stream."""
        fmt = choose_formats(u)
        ts = floor_for_formats(ts, fmt)
        return ts, render_many(ts, fmt)

    def add(
        self,
        etype: int,
        series: int,
        ts: int,
        fmt: int,
        fields: dict[str, Any],
        *,
        user: int = -1,
        code: int = -1,
        cents: int = 0,
        flags: int = 0,
    ) -> int:
        """Convenience form for rare events: builds the envelope, renders `ts`."""
        region, channel = _SERIES_FIELDS[series]
        d: dict[str, Any] = {
            "event_id": None,
            "type": TYPE_NAMES[etype],
            "ts": self._fmt.render(ts, fmt),
            "region": region,
            "channel": channel,
        }
        d.update(fields)
        return self.put(etype, series, ts, d, user, code, cents, flags)

    def put(
        self,
        etype: int,
        series: int,
        ts: int,
        d: dict[str, Any],
        user: int = -1,
        code: int = -1,
        cents: int = 0,
        flags: int = 0,
    ) -> int:
        """Record a fully built event; `d["event_id"]` is filled in here (the hot path)."""
        seq = self._n
        i = seq - self._ids_base
        if i >= self._ids_len:
            self._refill_ids()
            i = 0
        d["event_id"] = self._ids[i]
        self._n = seq + 1
        r = self._rand()
        if r < 0.075:
            if r < 0.07:
                d = self._reorder(d, r / 0.07)
            else:
                k, v = _EXTRAS[int((r - 0.07) / 0.005 * len(_EXTRAS)) % len(_EXTRAS)]
                d[k] = v
        self.lines.append(self._encode(d))
        self.ts.append(ts)
        self.meta.append((flags << 12) | (etype << 8) | series)
        self.user.append(user)
        self.code.append(code)
        self.cents.append(cents)
        return seq

    @staticmethod
    def _reorder(d: dict[str, Any], u: float) -> dict[str, Any]:
        """Different client SDKs emit keys in different orders."""
        keys = list(d)
        if u < 0.3:
            keys.sort()
        elif u < 0.55:
            keys.reverse()
        elif u < 0.8:
            keys = ["type", *[k for k in keys if k != "type"]]
        else:
            keys = [k for k in keys if k not in ("event_id", "ts")] + ["ts", "event_id"]
        return {k: d[k] for k in keys}

    def arrays(self) -> tuple[npt.NDArray[np.int64], ...]:
        """(ts, type, series, flags) as numpy arrays."""
        ts = np.frombuffer(self.ts, dtype=np.int64)
        meta = np.frombuffer(self.meta, dtype=np.int64)
        return ts, (meta >> 8) & 0xF, meta & 0xFF, meta >> 12

    def render_ts(self, ts: int, fmt: int) -> str | int:
        return self._fmt.render(ts, fmt)

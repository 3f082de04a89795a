"""``cross_region_scan``: codes of a batch scanned outside the region it was shipped to (串货).

A ``shipment`` authorises a ``batch_id`` to sell in its ``region``. Scans of that
batch's codes elsewhere mean the goods were diverted. One stray code is a traveller
carrying a bottle home; several distinct codes of one batch in another region within
an hour is a pallet that went the wrong way.

Batches never shipped (their shipment predates the data, or is simply missing) cannot
be judged: their scans are counted and kept in a small buffer per batch, so that a
shipment arriving after the first scans (out-of-order producers) re-judges them.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from detectors import texts
from koxpulse.alerts import Observation
from koxpulse.events import AnyEvent, Scan, Shipment

KIND = "cross_region_scan"
_NEVER = -(1 << 62)
_BUCKET_MS = 60_000

# authorisation of a batch: region (str) or regions (tuple), channel, outlet, last day seen
_A_REGIONS, _A_CHANNEL, _A_OUTLET, _A_DAY, _A_HOME = range(5)
# foreign scans of a batch: {code: (t, region, outlet)}, alert region, channel, emit, bucket
_F_CODES, _F_REGION, _F_CHANNEL, _F_EMIT, _F_WB = range(5)
# scans of a batch with no shipment yet: recent scans, scan count, bucket
_P_BUF, _P_SCANS, _P_WB = range(3)


def _authorised(regions: str | tuple[str, ...], region: str) -> bool:
    return regions == region or (regions.__class__ is tuple and region in regions)


def _as_list(regions: str | tuple[str, ...]) -> list[str]:
    return list(regions) if isinstance(regions, tuple) else [regions]


class CrossRegionDetector:
    """Distinct codes of one batch scanned outside its authorised region(s).

    Parameters (event time in epoch milliseconds):

    - ``min_codes`` (5): distinct codes of one batch scanned outside its authorised
      region(s) within ``window_ms`` (1 h) that make an alert. The contract's own
      background (a traveller, a gift) accounts for one or two codes.
    - ``min_codes_unsold`` (3): the same for a batch none of whose codes has been scanned
      in its authorised region(s) yet: every scan of it is elsewhere, so the whole batch
      went there, and fewer codes make the case. A traveller's codes come from a batch
      that is also scanned at home.
    - ``auth_ttl_ms`` (90 days): a batch's authorisation is forgotten after this long
      without a shipment or a scan of it.
    - ``pending_per_batch`` (32): scans buffered per batch whose shipment has not been
      seen (re-judged when it arrives), for at most ``pending_ttl_ms`` (1 h).
    - ``max_batches`` (1,000,000), ``max_foreign_batches`` (100,000),
      ``max_pending_batches`` (10,000), ``max_codes_per_batch`` (1,000): hard caps,
      oldest first.
    - ``emit_interval_ms`` (60 s): at most one observation per batch per interval.

    A shipment of an already authorised batch to another region adds that region. The
    shipment's channel is recorded as evidence; only regions are enforced.

    Counters: ``unshipped_scans`` (scans whose batch had no shipment yet),
    ``unshipped_batches`` (batches that started such a buffer) and
    ``scans_without_batch``; they are repeated in each alert's ``details``.

    Observations: entity ``batch``; ``region`` the foreign region with most codes when
    the alert first fires (stable for the incident); ``value`` distinct foreign codes;
    ``baseline`` the threshold; ``details``: authorised region(s), channel and outlet,
    ``scanned_regions`` (region -> distinct codes), the top 10 ``outlets`` and the
    first 10 ``codes``.

    >>> from koxpulse.events import Scan, Shipment
    >>> det = CrossRegionDetector()
    >>> det.update(Shipment(event_id="s", ts=0, region="CN-BJ", channel="offline",
    ...                     batch_id="B00009", codes=300), 0)
    []
    >>> def scan(k, region="CN-SH"):
    ...     return Scan(event_id=str(k), ts=0, region=region, channel="offline",
    ...                 code_id=f"B00009-{k:06d}", user_id=f"U{k}", batch_id="B00009")
    >>> det.update(scan(99, "CN-BJ"), 30_000)  # at home: fine, and the batch sells there
    []
    >>> [o for k in range(4) for o in det.update(scan(k), 60_000 * (k + 1))]
    []
    >>> [obs] = det.update(scan(4), 300_000)
    >>> obs.region, obs.value, obs.details["authorised_regions"], obs.details["scanned_regions"]
    ('CN-SH', 5.0, ['CN-BJ'], {'CN-SH': 5})
    >>> print(obs.summary)  # doctest: +NORMALIZE_WHITESPACE
    Batch B00009 is authorised for CN-BJ, but 5 of its codes were scanned in CN-SH
    within 4 minutes — likely channel diversion.
    """

    kind = KIND

    def __init__(
        self,
        *,
        min_codes: int = 5,
        min_codes_unsold: int = 3,
        window_ms: int = texts.HOUR_MS,
        auth_ttl_ms: int = 90 * texts.DAY_MS,
        pending_per_batch: int = 32,
        pending_ttl_ms: int = texts.HOUR_MS,
        max_batches: int = 1_000_000,
        max_foreign_batches: int = 100_000,
        max_pending_batches: int = 10_000,
        max_codes_per_batch: int = 1_000,
        emit_interval_ms: int = 60_000,
        lang: str = "en",
    ) -> None:
        if min_codes < 1 or window_ms <= 0 or auth_ttl_ms <= 0 or pending_ttl_ms <= 0:
            raise ValueError("min_codes and the durations must be positive")
        if max_codes_per_batch < min_codes or pending_per_batch < 1:
            raise ValueError("max_codes_per_batch >= min_codes and pending_per_batch >= 1")
        self.min_codes = min_codes
        self.min_codes_unsold = max(1, min(min_codes_unsold, min_codes))
        self.window_ms = window_ms
        self.auth_ttl_ms = auth_ttl_ms
        self.pending_per_batch = pending_per_batch
        self.pending_ttl_ms = pending_ttl_ms
        self.max_batches = max_batches
        self.max_foreign_batches = max_foreign_batches
        self.max_pending_batches = max_pending_batches
        self.max_codes_per_batch = max_codes_per_batch
        self.emit_interval_ms = emit_interval_ms
        self.lang = texts.check_lang(lang)
        self.unshipped_scans = 0
        self.unshipped_batches = 0
        self.scans_without_batch = 0
        self._auth: dict[str, list[Any]] = {}
        self._auth_wheel: dict[int, list[str]] = {}
        self._foreign: dict[str, list[Any]] = {}
        self._foreign_wheel: dict[int, list[str]] = {}
        self._pending: dict[str, list[Any]] = {}
        self._pending_wheel: dict[int, list[str]] = {}

    # -- event path ------------------------------------------------------------------

    def update(self, ev: AnyEvent, t: int) -> list[Observation]:
        """Feed one event at event time ``t`` (ms); scans and shipments matter."""
        out: list[Observation] = []
        cls = ev.__class__
        if cls is Scan:
            self.on_scan(ev, t, out)  # type: ignore[arg-type]
        elif cls is Shipment:
            self.on_shipment(ev, t, out)  # type: ignore[arg-type]
        return out

    def on_scan(self, ev: Scan, t: int, out: list[Observation]) -> None:
        batch = ev.batch_id
        if batch is None:
            self.scans_without_batch += 1
            return
        rec = self._auth.get(batch)
        if rec is None:
            self._pend(batch, ev, t)
            return
        day = t // texts.DAY_MS
        if day > rec[_A_DAY]:
            self._touch_auth(batch, rec, day)
        regions = rec[_A_REGIONS]
        region = ev.region
        if regions == region or (regions.__class__ is tuple and region in regions):
            rec[_A_HOME] += 1
            return
        f = self._foreign_record(batch, ev.channel, t)
        self._add(f, ev.code_id, t, region, ev.outlet_id)
        if len(f[_F_CODES]) >= (self.min_codes_unsold if not rec[_A_HOME] else self.min_codes):
            self._judge(batch, rec, f, t, out)

    def on_shipment(self, ev: Shipment, t: int, out: list[Observation]) -> None:
        batch = ev.batch_id
        region = ev.region
        day = t // texts.DAY_MS
        rec = self._auth.get(batch)
        if rec is None:
            rec = [region, ev.channel, ev.outlet_id, -1, 0]
            self._auth[batch] = rec
            self._touch_auth(batch, rec, day)
            if len(self._auth) > self.max_batches:
                self._evict(self._auth, self._auth_wheel, _A_DAY, self.max_batches)
        else:
            regions = rec[_A_REGIONS]
            if not _authorised(regions, region):
                rec[_A_REGIONS] = (*_as_list(regions), region)
                f = self._foreign.get(batch)
                if f is not None:  # codes now scanned where they may be sold
                    codes = f[_F_CODES]
                    for code in [c for c, v in codes.items() if v[1] == region]:
                        del codes[code]
            if day > rec[_A_DAY]:
                self._touch_auth(batch, rec, day)
        p = self._pending.pop(batch, None)
        if p is None:
            return
        cutoff = t - self.window_ms
        regions = rec[_A_REGIONS]
        f = None
        for st, code, sregion, schannel, outlet in p[_P_BUF]:
            if _authorised(regions, sregion):
                rec[_A_HOME] += 1
            elif st >= cutoff:
                if f is None:
                    f = self._foreign_record(batch, schannel, st)
                self._add(f, code, st, sregion, outlet)
        if f is not None and len(f[_F_CODES]) >= self._need(rec):
            self._judge(batch, rec, f, t, out)

    # -- helpers ---------------------------------------------------------------------

    def _touch_auth(self, batch: str, rec: list[Any], day: int) -> None:
        rec[_A_DAY] = day
        wl = self._auth_wheel.get(day)
        if wl is None:
            self._auth_wheel[day] = [batch]
        else:
            wl.append(batch)

    def _foreign_record(self, batch: str, channel: str, t: int) -> list[Any]:
        b = t // _BUCKET_MS
        f = self._foreign.get(batch)
        if f is None:
            f = [{}, None, channel, _NEVER, -1]
            self._foreign[batch] = f
            if len(self._foreign) > self.max_foreign_batches:
                self._evict(self._foreign, self._foreign_wheel, _F_WB, self.max_foreign_batches)
        if b > f[_F_WB]:
            f[_F_WB] = b
            wl = self._foreign_wheel.get(b)
            if wl is None:
                self._foreign_wheel[b] = [batch]
            else:
                wl.append(batch)
        return f

    def _add(self, f: list[Any], code: str, t: int, region: str, outlet: str | None) -> None:
        codes: dict[str, tuple[int, str, str | None]] = f[_F_CODES]
        if code not in codes:
            codes[code] = (t, region, outlet)
            if len(codes) > self.max_codes_per_batch:
                del codes[next(iter(codes))]

    def _judge(
        self, batch: str, rec: list[Any], f: list[Any], t: int, out: list[Observation]
    ) -> None:
        codes: dict[str, tuple[int, str, str | None]] = f[_F_CODES]
        cutoff = t - self.window_ms
        stale = []
        for code, v in codes.items():
            if v[0] >= cutoff:
                break
            stale.append(code)
        for code in stale:
            del codes[code]
        if len(codes) >= self._need(rec) and t - f[_F_EMIT] >= self.emit_interval_ms:
            f[_F_EMIT] = t
            out.append(self._observation(batch, rec, f, t))

    def _need(self, rec: list[Any]) -> int:
        """Foreign codes that make an alert: fewer while the batch has no scan at home."""
        return self.min_codes_unsold if not rec[_A_HOME] else self.min_codes

    def _pend(self, batch: str, ev: Scan, t: int) -> None:
        self.unshipped_scans += 1
        b = t // _BUCKET_MS
        item = (t, ev.code_id, ev.region, ev.channel, ev.outlet_id)
        p = self._pending.get(batch)
        if p is None:
            self.unshipped_batches += 1
            self._pending[batch] = [deque([item], maxlen=self.pending_per_batch), 1, b]
            wl = self._pending_wheel.get(b)
            if wl is None:
                self._pending_wheel[b] = [batch]
            else:
                wl.append(batch)
            if len(self._pending) > self.max_pending_batches:
                self._evict(self._pending, self._pending_wheel, _P_WB, self.max_pending_batches)
            return
        p[_P_BUF].append(item)
        p[_P_SCANS] += 1
        if b > p[_P_WB]:
            p[_P_WB] = b
            wl = self._pending_wheel.get(b)
            if wl is None:
                self._pending_wheel[b] = [batch]
            else:
                wl.append(batch)

    def _observation(self, batch: str, rec: list[Any], f: list[Any], t: int) -> Observation:
        codes: dict[str, tuple[int, str, str | None]] = f[_F_CODES]
        n = len(codes)
        by_region: dict[str, int] = {}
        by_outlet: dict[str, int] = {}
        start = t
        for st, region, outlet in codes.values():
            by_region[region] = by_region.get(region, 0) + 1
            if outlet is not None:
                by_outlet[outlet] = by_outlet.get(outlet, 0) + 1
            start = min(start, st)
        scanned = texts.top(by_region, len(by_region))
        if f[_F_REGION] is None:
            f[_F_REGION] = next(iter(scanned))
        authorised = _as_list(rec[_A_REGIONS])
        pending_top = heapq.nlargest(
            texts.TOP_N, self._pending.items(), key=lambda kv: (kv[1][_P_SCANS], kv[0])
        )
        return Observation(
            kind=KIND,
            entity_type="batch",
            entity_id=batch,
            t=t,
            region=f[_F_REGION],
            channel=f[_F_CHANNEL],
            severity=texts.severity(n, self._need(rec)),
            value=float(n),
            baseline=float(self._need(rec)),
            summary=texts.cross_region(
                self.lang, batch, n, t - start, list(scanned)[:3], authorised
            ),
            details={
                "batch_id": batch,
                "authorised_regions": authorised,
                "authorised_channel": rec[_A_CHANNEL],
                "authorised_outlet": rec[_A_OUTLET],
                "distinct_codes": n,
                "threshold": self._need(rec),
                "scans_in_authorised_region": rec[_A_HOME],
                "window_minutes": self.window_ms // texts.MINUTE_MS,
                "span_minutes": round((t - start) / texts.MINUTE_MS, 1),
                "first_seen_at": texts.iso(start),
                "scanned_regions": scanned,
                "outlets": texts.top(by_outlet),
                "codes": texts.first(codes),
                "unshipped_scans": self.unshipped_scans,
                "unshipped_batches": self.unshipped_batches,
                "scans_without_batch": self.scans_without_batch,
                "pending_batches": {k: v[_P_SCANS] for k, v in pending_top},
            },
        )

    # -- state -----------------------------------------------------------------------

    def expire(self, now: int) -> None:
        """Forget foreign scans and pending scans past their windows, stale authorisations."""
        self._expire(
            self._foreign, self._foreign_wheel, _F_WB, (now - self.window_ms) // _BUCKET_MS
        )
        self._expire(
            self._pending, self._pending_wheel, _P_WB, (now - self.pending_ttl_ms) // _BUCKET_MS
        )
        self._expire(self._auth, self._auth_wheel, _A_DAY, (now - self.auth_ttl_ms) // texts.DAY_MS)

    @staticmethod
    def _expire(
        state: dict[str, list[Any]], wheel: dict[int, list[str]], wb: int, cutoff_b: int
    ) -> None:
        for b in [k for k in wheel if k < cutoff_b]:
            for key in wheel.pop(b):
                rec = state.get(key)
                if rec is not None and rec[wb] <= b:
                    del state[key]

    @staticmethod
    def _evict(state: dict[str, list[Any]], wheel: dict[int, list[str]], wb: int, cap: int) -> None:
        while len(state) > cap and wheel:
            b = min(wheel)
            for key in wheel.pop(b):
                rec = state.get(key)
                if rec is not None and rec[wb] <= b:
                    del state[key]
        if len(state) > cap:  # a record created just now, not yet on the wheel
            for key in list(state)[: len(state) - cap]:
                del state[key]

    def state_size(self) -> int:
        """Authorised batches, batches with foreign scans, pending batches."""
        return len(self._auth) + len(self._foreign) + len(self._pending)

"""高扫码低核销 detector: fires on a sustained shortfall, stays quiet otherwise, pickles exactly."""

from __future__ import annotations

import doctest
import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.high_scan_low_redemption as hslr_module
from detectors.high_scan_low_redemption import HighScanLowRedemption, poisson_cdf

B = 600_000


def test_doctests() -> None:
    assert doctest.testmod(hslr_module).failed == 0


def stream(seed: int, drop_at: int | None, n: int = 400) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = []
    for b in range(n):
        hour = (b // 6) % 24
        level = 40 + 30 * (8 <= hour <= 22)
        scans = max(0, int(rng.gauss(level, level**0.5)))
        rate = 0.5 if drop_at is None or b < drop_at else 0.05
        reds = sum(1 for _ in range(scans) if rng.random() < rate)
        out.append((scans, reds))
    return out


def run(det: HighScanLowRedemption, data: list[tuple[int, int]], start: int = 0) -> list[int]:
    return [
        b + start
        for b, (s, r) in enumerate(data)
        if det.update("CN-SD|offline", (b + start) * B, scans=s, redemptions=r) is not None
    ]


def test_quiet_on_normal_traffic_and_fires_soon_after_a_collapse() -> None:
    for seed in range(5):
        assert run(HighScanLowRedemption(), stream(seed, None)) == []
        fired = run(HighScanLowRedemption(), stream(seed, drop_at=300))
        assert fired, seed
        assert 300 <= fired[0] <= 310  # within 100 minutes of the collapse


def test_everything_down_is_not_high_scan_low_redemption() -> None:
    data = stream(1, None)
    data = data[:300] + [(s // 10, r // 10) for s, r in data[300:]]
    assert run(HighScanLowRedemption(), data) == []


def test_a_small_outlet_whose_scans_jump_is_not_short_by_lag_alone() -> None:
    # usual: 8 scans and 7 redemptions an hour; then scans treble for an hour while the
    # redemptions of those scans have not come yet (3 an hour): short of 3 x 7 = 21
    # "expected", but not of what the usual scans bring, so no page
    normal = [(8 // 6 + (b % 6 < 2), 7 // 6 + (b % 6 < 1)) for b in range(6 * 36)]
    surge = [(4, 0 if b % 2 else 1) for b in range(12)]
    data = normal + surge
    assert run(HighScanLowRedemption(min_expected=15, sustain=3), data) == []
    uncapped = HighScanLowRedemption(min_expected=15, sustain=3, p_scan_cap=0)
    assert run(uncapped, data) != []


def test_poisson_tail() -> None:
    assert abs(poisson_cdf(0, 2.0) - 0.1353352832) < 1e-9
    assert abs(poisson_cdf(3, 10.0) - 0.0103360506) < 1e-9
    assert poisson_cdf(12, 10.0) == 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(150, 350))
def test_pickled_detector_continues_identically(seed: int, cut: int) -> None:
    data = stream(seed, drop_at=320)
    a = HighScanLowRedemption()
    run(a, data[:cut])
    b = pickle.loads(pickle.dumps(a))
    assert run(a, data[cut:], cut) == run(b, data[cut:], cut)
    c = HighScanLowRedemption()
    d = HighScanLowRedemption()
    assert run(c, data) == run(d, data)


def test_a_plain_collapse_of_a_busy_key_fires_on_its_first_bucket() -> None:
    # 40-70 scans per bucket at 50 %: 20-35 redemptions expected per bucket, so a level
    # with twice that volume gives the single-bucket judgement enough to be sure of
    for seed in range(3):
        busy = [(s * 3, r * 3) for s, r in stream(seed, drop_at=300)]
        fired = run(HighScanLowRedemption(), busy)
        # (a bucket whose scans dip below 80 % of usual is not judged on its own)
        assert fired and fired[0] in (300, 301), (seed, fired[:3])
        # without the fast path the hour's evidence takes several buckets
        slow = run(HighScanLowRedemption(fast_buckets=0), busy)
        assert slow and slow[0] >= fired[0] + 2, (seed, slow[:3])


def test_a_small_key_short_over_a_few_buckets_fires_before_the_hour_is_sustained() -> None:
    # 40-70 scans per bucket at 50 %: 20-35 redemptions expected per bucket, under the
    # single-bucket volume (40) but plain over two or three buckets together
    for seed in range(3):
        data = stream(seed, drop_at=300)
        runs = run(HighScanLowRedemption(fast_min_expected=40), data)
        single = run(HighScanLowRedemption(fast_min_expected=40, fast_buckets=1), data)
        assert runs and single, seed
        assert runs[0] in (301, 302, 303), (seed, runs[:3])
        assert single[0] >= runs[0] + 1, (seed, single[:3], runs[:3])
    for seed in range(5):  # and the runs add no alert on normal traffic
        assert run(HighScanLowRedemption(), stream(seed, None)) == []


def test_peek_judges_an_open_bucket_without_changing_state() -> None:
    busy = [(s * 3, r * 3) for s, r in stream(0, drop_at=None)]
    det = HighScanLowRedemption()
    run(det, busy[:300])
    before = pickle.dumps(det)
    scans = busy[300][0]
    # seven tenths of a bucket: its scans so far, and no redemption at all
    part = scans * 7 // 10
    v = det.peek("CN-SD|offline", 300 * B, scans=part, redemptions=0, share=0.7)
    assert v is not None and v.redemptions == sum(r for _, r in busy[295:300])
    assert pickle.dumps(det) == before
    # usual redemptions so far: nothing to report
    usual = busy[300][1] * 7 // 10
    assert det.peek("CN-SD|offline", 300 * B, scans=part, redemptions=usual, share=0.7) is None
    # an unknown key, or one not armed yet, is not judged
    assert det.peek("CN-XX|offline", 300 * B, scans=part, redemptions=0, share=0.7) is None


def test_redemptions_that_come_in_bursts_are_judged_against_their_own_spread() -> None:
    # group-buying pick-ups: 120 scans an hour, and redemptions come in runs of an hour
    # or so with nothing in between; an hour without redemptions is usual for this key,
    # however unlikely a Poisson count makes it look
    for period in (10, 14):
        data = [(20, 20 if (b // (period // 2)) % 2 == 0 else 0) for b in range(1200)]
        assert run(HighScanLowRedemption(fast_buckets=0), data) == [], period
        assert run(HighScanLowRedemption(fast_buckets=0, dev_k=0), data) != [], period
    # while a steady key that stops redeeming still fires
    steady = [(20, 10 if b < 500 else 0) for b in range(600)]
    fired = run(HighScanLowRedemption(fast_buckets=0), steady)
    assert fired and 500 <= fired[0] <= 506

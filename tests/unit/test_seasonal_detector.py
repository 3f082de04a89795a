"""SeasonalRobustDetector: usage example, determinism, pickling, detection power, cold start."""

from __future__ import annotations

import doctest
import math
import pickle
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.seasonal_robust as sr
from detectors.seasonal_robust import SeasonalRobustDetector

T0 = datetime(2024, 3, 4)
STEP = timedelta(minutes=5)


def _seasonal_series(n: int, seed: int) -> np.ndarray:
    """Noisy daily pattern (288 samples/day) with a mild weekly effect."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    day = 100 + 40 * np.sin(2 * np.pi * i / 288) + 15 * np.sin(4 * np.pi * i / 288)
    week = 8 * ((i // 288) % 7 >= 5)
    return day - week + rng.normal(0, 4, n)


def _run(det: SeasonalRobustDetector, xs: np.ndarray, start: int = 0) -> np.ndarray:
    out = np.empty(len(xs))
    for k, x in enumerate(xs):
        t = T0 + (start + k) * STEP
        out[k] = det.score_one(float(x), t)
        det.learn_one(float(x), t)
    return out


def test_docstring_example() -> None:
    failures, tried = doctest.testmod(sr, verbose=False)
    assert tried > 0 and failures == 0


def test_cold_start_is_zero_until_warmed_up() -> None:
    det = SeasonalRobustDetector(warmup=100, warmup_days=0.0)
    xs = np.r_[np.zeros(50), np.full(49, 1e6)]  # wild values during warm-up
    assert not det.warmed_up
    assert (_run(det, xs) == 0.0).all()
    assert not det.warmed_up
    det.learn_one(0.0)
    assert det.warmed_up


def test_regular_series_warm_up_for_a_whole_day() -> None:
    det = SeasonalRobustDetector(warmup=50)  # 5-minute samples: one day is 288
    scores = _run(det, _seasonal_series(400, seed=0) + 1e3 * (np.arange(400) == 200))
    assert (scores[:287] == 0.0).all()
    assert det.warmed_up


def test_same_inputs_same_outputs() -> None:
    xs = _seasonal_series(3000, seed=1)
    a = _run(SeasonalRobustDetector(), xs)
    b = _run(SeasonalRobustDetector(), xs)
    assert np.array_equal(a, b)
    assert ((a >= 0.0) & (a < 1.0)).all()


def test_score_one_does_not_learn() -> None:
    det = SeasonalRobustDetector(warmup=10)
    _run(det, np.arange(20.0))
    before = pickle.dumps(det)
    s1 = det.score_one(1e9, T0)
    s2 = det.score_one(1e9, T0)
    assert s1 == s2 > 0.99
    assert pickle.loads(before).score_one(1e9, T0) == s1


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=400
    ),
    split=st.integers(min_value=0, max_value=400),
    timed=st.booleans(),
)
def test_pickled_copy_continues_identically(values: list[float], split: int, timed: bool) -> None:
    det = SeasonalRobustDetector(warmup=20, seasonal_warmup_days=0.1)
    split = min(split, len(values))

    def feed(d: SeasonalRobustDetector, xs: list[float], start: int) -> list[float]:
        out = []
        for k, x in enumerate(xs):
            t = T0 + (start + k) * STEP if timed else None
            out.append(d.score_one(x, t))
            d.learn_one(x, t)
        return out

    feed(det, values[:split], 0)
    clone = pickle.loads(pickle.dumps(det))
    assert feed(det, values[split:], split) == feed(clone, values[split:], split)


def test_detects_injected_spike_in_noisy_seasonal_series() -> None:
    xs = _seasonal_series(288 * 10, seed=2)
    at = 288 * 8 + 100
    xs[at] += 120.0  # a spike well above anything before
    scores = _run(SeasonalRobustDetector(), xs)
    others = np.delete(scores, at)
    assert scores[at] > 0.9
    assert scores[at] > np.quantile(others, 0.999)


def test_detects_level_shift_within_the_daily_range() -> None:
    xs = _seasonal_series(288 * 12, seed=3)
    at = 288 * 9 + 144
    xs[at:] -= 35.0  # stays inside the historical range: only the profile can tell
    scores = _run(SeasonalRobustDetector(), xs)
    hit = scores[at : at + 48].max()
    before = scores[: at - 1]
    assert hit > 0.5
    assert hit > before.max()


def test_detects_drop_to_night_level_at_midday() -> None:
    xs = _seasonal_series(288 * 10, seed=4)
    noon = 288 * 8 + 72  # around the daily peak
    xs[noon : noon + 12] = 60.0  # ordinary at night, unprecedented at this time of day
    scores = _run(SeasonalRobustDetector(), xs)
    assert scores[noon : noon + 12].max() > np.quantile(scores[:noon], 0.999)


def test_nan_and_untimed_inputs() -> None:
    det = SeasonalRobustDetector(warmup=5)
    for x in range(10):
        det.learn_one(float(x))
    n = det.n
    det.learn_one(math.nan)
    assert det.n == n
    assert det.score_one(math.nan) == 0.0
    assert det.score_one(100.0) > 0.9  # a new extreme without timestamps


def test_state_is_bounded() -> None:
    det = SeasonalRobustDetector()
    xs = _seasonal_series(288 * 30, seed=5)
    _run(det, xs[: 288 * 15])
    size_half = len(pickle.dumps(det))
    _run(det, xs[288 * 15 :], start=288 * 15)
    assert len(pickle.dumps(det)) <= size_half * 1.05 + 256
    assert size_half < 100_000


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        SeasonalRobustDetector(warmup=0)
    with pytest.raises(ValueError):
        SeasonalRobustDetector(windows=(0,))

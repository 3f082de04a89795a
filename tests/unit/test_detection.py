"""The detection step on KPI rows: a midday orders outage is one kpi_anomaly, noise is none."""

from __future__ import annotations

import math
import random

from koxpulse.detection import Detection, DetectionParams
from koxpulse.kpi import KpiOutput, KpiRow

MIN = 60_000
T0 = 1_763_222_400_000  # 2025-11-15T16:00:00Z, midnight in Beijing


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth; lam stays small per minute
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def rows(
    seed: int,
    minutes: int,
    outage: range | None,
    surge: range | None = None,
    unredeemed: range | None = None,
    orders_at: tuple[range, float] | None = None,
    redemptions_at: tuple[range, float] | None = None,
) -> list[KpiRow]:
    """Per-minute rows of one region x channel with a daily rhythm (Beijing daytime busy);
    no orders during ``outage``, four times the scans during ``surge``, no redemptions
    during ``unredeemed``; orders or redemptions at a share of their usual rate during
    ``orders_at`` or ``redemptions_at`` (minutes, share)."""
    rng = random.Random(seed)
    out: list[KpiRow] = []
    for m in range(minutes):
        hour = (m // 60) % 24
        busy = 1.0 if 8 <= hour < 22 else 0.25
        scans = _poisson(rng, 12 * busy * (4 if surge is not None and m in surge else 1))
        red_share = redemptions_at[1] if redemptions_at and m in redemptions_at[0] else 1.0
        # a promotion's scans bring their redemptions (at minute grain, in the same minute)
        red_share *= 4 if surge is not None and m in surge else 1
        reds = _poisson(rng, 5 * busy * red_share)
        if unredeemed is not None and m in unredeemed:
            reds = 0
        order_share = orders_at[1] if orders_at and m in orders_at[0] else 1.0
        orders = 0 if outage is not None and m in outage else _poisson(rng, 6 * busy * order_share)
        buyers = orders
        repeat = sum(rng.random() < 0.4 for _ in range(buyers))
        out.append(
            (
                T0 + m * MIN,
                "CN-SC",
                "ecommerce",
                scans,
                scans,
                scans,
                reds,
                orders,
                orders * 50.0,
                buyers,
                repeat,
                reds / scans if scans else None,
                repeat / buyers if buyers else None,
                1,
            )
        )
    return out


def replay(
    data: list[KpiRow], step: int = 10, params: DetectionParams | None = None
) -> dict[str, object]:
    det = Detection(params)
    latest: dict[str, object] = {}
    for i in range(0, len(data), step):
        chunk = data[i : i + step]
        closed = chunk[-1][0] + MIN
        for alert in det.process(KpiOutput(rows=chunk, closed_through=closed)):
            latest[alert.alert_id] = alert
    return latest


def replay_batched(data: list[KpiRow], kinds: list[str]) -> object:
    """The alerts of replays in batches of 1, 7 and 10 minutes: each must be ``kinds`` and
    all three the same; returns the first alert."""
    by_step = {}
    for step in (1, 7, 10):
        alerts = list(replay(data, step).values())
        assert [a.kind for a in alerts] == kinds, step  # type: ignore[attr-defined]
        by_step[step] = alerts
    # the same alert whatever the batching of closed minutes
    assert by_step[7] == by_step[1] == by_step[10]
    return by_step[1][0]


def test_steady_traffic_raises_nothing() -> None:
    for seed in range(3):
        assert replay(rows(seed, 40 * 60, None)) == {}, seed


def test_a_midday_orders_outage_is_one_kpi_anomaly() -> None:
    start = 36 * 60  # 12:00 Beijing on the second day
    alerts = list(replay(rows(1, 40 * 60, range(start, start + 60))).values())
    assert [a.kind for a in alerts] == ["kpi_anomaly"]  # type: ignore[attr-defined]
    a = alerts[0]
    assert a.details["metric"] == "orders" and a.details["direction"] == "down"  # type: ignore[attr-defined]
    # 6 orders a minute stop: the early look is sure of a fall past half the usual level
    # within minutes (0 in 5 minutes where at least 15 would be usual), and the incident
    # stays one alert while the full buckets confirm it
    assert T0 + start * MIN < a.starts_at <= T0 + (start + 6) * MIN  # type: ignore[attr-defined]
    assert (a.region, a.channel) == ("CN-SC", "ecommerce")  # type: ignore[attr-defined]


def test_a_scan_surge_alerts_within_minutes_of_its_start_however_minutes_are_batched() -> None:
    start = 36 * 60 + 3  # 12:03 Beijing on the second day: inside a 10-minute bucket
    data = rows(2, 40 * 60, None, surge=range(start, start + 30))
    a = replay_batched(data, ["kpi_anomaly"])
    # the early look judged the partial bucket: alerted before the bucket was complete
    assert a.details["metric"] == "scans" and a.details["direction"] == "up"  # type: ignore[attr-defined]
    assert "early" in a.details  # type: ignore[attr-defined]
    assert T0 + start * MIN < a.starts_at <= T0 + (start + 5) * MIN  # type: ignore[attr-defined]


def test_redemptions_stopping_in_a_busy_key_alert_before_their_bucket_completes() -> None:
    start = 36 * 60  # 12:00 Beijing on the second day, a bucket's start
    data = rows(3, 40 * 60, None, unredeemed=range(start, start + 90))
    a = replay_batched(data, ["high_scan_low_redemption"])
    assert (a.entity_type, a.entity_id) == ("region", "CN-SC")  # type: ignore[attr-defined]
    # it started before the bucket was complete: the early look judged the open bucket
    assert T0 + start * MIN < a.starts_at < T0 + (start + 10) * MIN  # type: ignore[attr-defined]


def peak_rows(seed: int, minutes: int, volume: float) -> list[KpiRow]:
    """A busy series with a sharp evening peak every day (half as much again from 20:30 to
    21:10 Beijing, as live-stream selling brings) and mild 15-minute noise: inside the
    hour of the peak the level jumps, far beyond Poisson noise at this volume."""
    rng = random.Random(seed)
    out: list[KpiRow] = []
    block = 1.0
    for m in range(minutes):
        if m % 15 == 0:
            block = math.exp(rng.gauss(0.0, 0.08))
        local = m % 1440
        peak = 1.5 if 20 * 60 + 30 <= local < 21 * 60 + 10 else 1.0
        busy = 1.0 if 8 * 60 <= local < 23 * 60 else 0.3
        lam = volume * busy * peak * block
        scans = int(max(0.0, rng.gauss(lam, math.sqrt(lam))))
        orders = int(max(0.0, rng.gauss(lam / 3, math.sqrt(lam / 3))))
        reds = scans // 2
        out.append(
            (T0 + m * MIN, "CN-GD", "ecommerce", scans, scans, scans, reds, orders,
             orders * 50.0, orders, orders // 3, reds / scans if scans else None,
             (orders // 3) / orders if orders else None, 1)
        )  # fmt: skip
    return out


def test_a_busy_series_with_a_peak_inside_an_hour_raises_nothing_from_its_first_day() -> None:
    # ~100 scans a minute: the jump inside the peak's hour is far outside Poisson noise,
    # so the usual range must come from the series' own spread, fully weighted after one
    # day, and an hour not seen on an earlier day is not judged at all
    for seed in range(3):
        assert replay(peak_rows(seed, 46 * 60, 100.0)) == {}, seed


def test_orders_at_a_third_for_ninety_minutes_alert_from_the_sustained_hour() -> None:
    # a moderate fall: each 10-minute bucket stays inside its (Poisson-wide) band and the
    # novelty score absorbs the hourly sum as it slides down; the hour outside its band
    # for two buckets, with the latest bucket still down, is the evidence
    start = 36 * 60  # 12:00 Beijing on the second day
    missed_without = 0
    for seed in range(3):
        data = rows(seed, 40 * 60, None, orders_at=(range(start, start + 90), 1 / 3))
        alerts = list(replay(data).values())
        assert [a.kind for a in alerts] == ["kpi_anomaly"], seed  # type: ignore[attr-defined]
        a = alerts[0]
        assert a.details["metric"] == "orders" and a.details["direction"] == "down"  # type: ignore[attr-defined]
        assert a.details["window_minutes"] == 60  # type: ignore[attr-defined]
        assert T0 + (start + 40) * MIN <= a.starts_at <= T0 + (start + 90) * MIN  # type: ignore[attr-defined]
        missed_without += replay(data, params=DetectionParams(kpi_hour_sustain=0)) == {}
    # without the sustained-hour rule the fall goes unreported in two of the three
    assert missed_without == 2


def test_an_orders_dip_that_is_over_does_not_echo_in_the_hourly_sum() -> None:
    # 30 minutes at a third: the hourly sum stays low for most of an hour after the dip
    # ends, but the latest bucket is back to usual, so nothing is reported
    start = 36 * 60
    for seed in range(3):
        data = rows(seed, 40 * 60, None, orders_at=(range(start, start + 30), 1 / 3))
        assert replay(data) == {}, seed


def test_redemptions_at_half_for_two_hours_are_high_scan_low_redemption() -> None:
    # scans as usual, half of the usual redemptions: short of what the scans usually bring
    # by far more than chance or the key's own spread allow, though not a collapse
    start = 36 * 60
    for seed in range(3):
        data = rows(seed, 40 * 60, None, redemptions_at=(range(start, start + 120), 0.5))
        alerts = list(replay(data).values())
        assert [a.kind for a in alerts] == ["high_scan_low_redemption"], seed  # type: ignore[attr-defined]
        assert T0 + start * MIN < alerts[0].starts_at <= T0 + (start + 100) * MIN  # type: ignore[attr-defined]
        # the detector's own 40 % (a collapse) would not report it
        assert replay(data, params=DetectionParams(hslr_ratio=0.4)) == {}, seed


def test_an_hour_is_flagged_only_while_its_latest_bucket_still_shows_the_change() -> None:
    # an hourly count long above usual (the old sustained rule would keep flagging it) is
    # no longer evidence once its latest 10-minute bucket is back to usual: the surge is
    # over and the hour merely remembers it
    from koxpulse.detection import _SeriesMonitor

    rng = random.Random(4)
    mon = _SeriesMonitor(DetectionParams())
    b = 0
    for b in range(2 * 144):
        mon.step(T0 + b * 10 * MIN, 700.0 + rng.gauss(0, 20), latest=(120.0, 120.0))
    t = T0 + (b + 1) * 10 * MIN
    flags = [mon.step(t + k * 10 * MIN, 1500.0, latest=(480.0, 120.0))[2] for k in range(3)]
    assert flags[-1], flags  # surging: flagged (by the score, then the sustained hour)
    after = mon.step(t + 3 * 10 * MIN, 1500.0, latest=(125.0, 120.0))
    assert after[2] is False


def test_the_sustained_hour_asks_for_a_change_beyond_the_other_keys_common_lift() -> None:
    # a weekend lifts every region and channel at once, which an hour-of-day profile cannot
    # know in its first week: a key is judged against the lift of all the others
    from koxpulse.detection import _SeriesMonitor

    rng = random.Random(5)
    mon = _SeriesMonitor(DetectionParams())
    for b in range(2 * 144):
        mon.step(T0 + b * 10 * MIN, 700.0 + rng.gauss(0, 20), latest=(120.0, 120.0))
    slot = ((T0 + 288 * 10 * MIN) // 3_600_000) % 24
    assert mon._hour_change(slot, 1200.0) == 1  # 1.7x its usual level: changed
    assert mon._hour_change(slot, 1200.0, lift=1.6) == 0  # everything is up 1.6x
    assert mon._hour_change(slot, 1900.0, lift=1.6) == 1  # beyond 1.5 x 1.6
    assert mon._hour_change(slot, 200.0, lift=1.6) == -1  # a fall is judged as before
    assert mon._hour_change(slot, 200.0, lift=0.5) == 0  # unless everything fell too

    det = Detection()
    det.hour_totals = {"scans": {("A", "x"): (1600.0, 1000.0), ("B", "x"): (300.0, 100.0)}}
    # leave one out: A is judged against B's 3x, B against A's 1.6x
    assert det._lift("scans", ("A", "x")) == 3.0
    assert det._lift("scans", ("B", "x")) == 1.6
    assert det._lift("orders", ("A", "x")) == 1.0  # nothing known: no lift

"""Metrics: exact KPI gauges and counters, folding into ``other``, a fixed bound on series."""

from __future__ import annotations

import math

import numpy as np

from koxpulse.batches import DecodedBatch
from koxpulse.events import Order, Redemption, Scan
from koxpulse.kpi import KpiAggregator
from koxpulse.kpi_metrics import LabelFolder
from koxpulse.metrics import Metrics
from koxpulse.settings import Settings
from koxpulse.stages import Stages

MIN = 60_000
T0 = 1_795_000_020 * 1000 - (1_795_000_020 * 1000) % MIN  # a minute boundary


def row(minute: int, region: str, channel: str, scans: int, reds: int, orders: int, rev: float):
    """A kpi_minute row with the fields the metrics read; the rest are placeholders."""
    return (minute, region, channel, scans, 0, 0, reds, orders, rev, 0, 0, None, None, 1)


def labels(region: str, channel: str) -> dict[str, str]:
    return {"region": region, "channel": channel}


def test_counters_sum_every_closed_minute_gauges_show_the_last_one() -> None:
    m = Metrics()
    m.observe_kpi_rows(
        [
            row(T0, "CN-SD", "offline", 10, 4, 2, 59.9),
            row(T0, "CN-GD", "offline", 5, 1, 0, 0.0),
            row(T0 + MIN, "CN-SD", "offline", 20, 5, 1, 30.0),
        ]
    )
    sd = labels("CN-SD", "offline")
    assert m.value("koxpulse_kpi_scans_total", sd) == 30
    assert m.value("koxpulse_kpi_redemptions_total", sd) == 9
    assert m.value("koxpulse_kpi_orders_total", sd) == 3
    assert m.value("koxpulse_kpi_revenue_cny_total", sd) == 89.9
    assert m.value("koxpulse_kpi_last_minute_scans", sd) == 20
    assert m.value("koxpulse_kpi_last_minute_redemption_rate", sd) == 0.25
    assert m.value("koxpulse_kpi_last_minute_start_seconds") == (T0 + MIN) / 1000
    # CN-GD had no row in the last closed minute: nothing happened there
    gd = labels("CN-GD", "offline")
    assert m.value("koxpulse_kpi_scans_total", gd) == 5
    assert m.value("koxpulse_kpi_last_minute_scans", gd) == 0
    assert math.isnan(m.value("koxpulse_kpi_last_minute_redemption_rate", gd))
    # the next batch's minute replaces the gauges, the counters go on
    m.observe_kpi_rows([row(T0 + 2 * MIN, "CN-GD", "offline", 8, 2, 1, 10.5)])
    assert m.value("koxpulse_kpi_last_minute_scans", sd) == 0
    assert m.value("koxpulse_kpi_last_minute_scans", gd) == 8
    assert m.value("koxpulse_kpi_last_minute_revenue_cny", gd) == 10.5
    assert m.value("koxpulse_kpi_scans_total", gd) == 13


def test_label_folder_keeps_the_first_values_and_folds_the_rest() -> None:
    fold = LabelFolder(2)
    assert [fold(v) for v in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
        "b",
    ]
    assert LabelFolder(5)("other") == "other"


def test_a_thousand_regions_make_a_fixed_number_of_series() -> None:
    m = Metrics(max_regions=50, max_channels=10)
    baseline = m.series_count()
    channels = ("offline", "ecommerce", "community")
    rows = [
        row(T0, f"R{r:04d}", ch, 1 + r % 7, r % 3, r % 2, float(r))
        for r in range(1000)
        for ch in channels
    ]
    for start in range(0, len(rows), 300):  # several batches, one minute
        m.observe_kpi_rows(rows[start : start + 300])
    m.observe_kpi_rows([row(T0 + MIN, f"R{r:04d}", "offline", 1, 0, 0, 0.0) for r in range(1000)])
    regions = {
        s.labels["region"]
        for metric in m.registry.collect()
        for s in metric.samples
        if "region" in s.labels
    }
    assert len(regions) == 51 and "other" in regions
    assert {f"R{r:04d}" for r in range(50)} <= regions
    # 9 KPI metrics x 51 regions x 3 channels (+ the minute the gauges describe), whatever
    # the number of regions sent; the bound with every limit reached is 9 x 51 x 11 + 1
    assert m.series_count() - baseline == 9 * 51 * 3 + 1
    assert m.series_count() < baseline + 9 * 51 * 11 + 1
    # nothing is lost by folding: "other" holds exactly the regions beyond the first 50
    other = sum(m.value("koxpulse_kpi_scans_total", labels("other", ch)) for ch in channels)
    assert other == sum(1 + r % 7 for r in range(50, 1000)) * 3 + 950
    assert m.value("koxpulse_kpi_folded_rows_total") == 950 * 3 + 950
    total = sum(
        s.value
        for metric in m.registry.collect()
        for s in metric.samples
        if s.name == "koxpulse_kpi_scans_total"
    )
    assert total == sum(1 + r % 7 for r in range(1000)) * 3 + 1000


def test_events_are_counted_by_type_and_outcome_per_batch() -> None:
    settings = Settings()
    m = Metrics()
    stages = Stages(settings, m, expected_partitions=["f"])
    agg = KpiAggregator(expected_partitions={"f"})
    events = [
        Scan(event_id="s1", ts=T0, region="CN-SD", channel="offline", code_id="c1", user_id="u1"),
        Scan(event_id="s1", ts=T0, region="CN-SD", channel="offline", code_id="c1", user_id="u1"),
        Scan(event_id="s2", ts=T0, region="CN-SD", channel="offline", code_id="c2", user_id="u2"),
        Redemption(
            event_id="r1", ts=T0, region="CN-SD", channel="offline", code_id="c1", user_id="u1"
        ),
        Order(
            event_id="o1",
            ts=T0,
            region="CN-SD",
            channel="offline",
            order_id="o1",
            user_id="u1",
            amount=12.5,
        ),
        Order(
            event_id="o1",
            ts=T0,
            region="CN-SD",
            channel="offline",
            order_id="o1",
            user_id="u1",
            amount=12.5,
        ),
    ]
    batch = DecodedBatch(
        "f", "f", "", 0, events, np.array([T0] * len(events)), list(range(1, 7)), 6, eof=True
    )
    out = agg.process(batch)
    stages.account(out, agg)

    def ev(type_: str, outcome: str) -> float:
        return m.value("koxpulse_events_total", {"type": type_, "outcome": outcome})

    assert (ev("scan", "ok"), ev("redemption", "ok"), ev("order", "ok")) == (2, 1, 1)
    assert (ev("scan", "duplicate"), ev("order", "duplicate")) == (1, 1)
    assert m.total("koxpulse_events_total") == 6
    sd = labels("CN-SD", "offline")
    assert m.value("koxpulse_kpi_scans_total", sd) == 2
    assert m.value("koxpulse_kpi_revenue_cny_total", sd) == 12.5


def test_emission_delay_and_event_to_alert_latency_use_the_wall_clock() -> None:
    m = Metrics(wall_clock=lambda: (T0 + 3 * MIN) / 1000)
    # window [T0, T0+1m) could close at T0 + 1m + 60 s lateness: emitted 60 s later
    m.observe_emission([T0], lateness_ms=60_000)
    assert m.value("koxpulse_window_emission_delay_seconds_sum") == 60
    assert m.value("koxpulse_window_emission_delay_seconds_bucket", {"le": "30.0"}) == 0
    assert m.value("koxpulse_window_emission_delay_seconds_bucket", {"le": "60.0"}) == 1
    m.observe_alerts(2, received_at_ms=T0 + 3 * MIN - 250)
    assert m.value("koxpulse_event_to_alert_seconds_count") == 2
    assert m.value("koxpulse_event_to_alert_seconds_sum") == 0.5
    m.observe_alerts(3, received_at_ms=None)  # the final flush has no receipt: not timed
    assert m.value("koxpulse_event_to_alert_seconds_count") == 2

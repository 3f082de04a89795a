"""The local cluster's plumbing: settings reach the children, metrics come back summed."""

from __future__ import annotations

from pathlib import Path

from koxpulse.cluster import merge_textfiles, settings_env
from koxpulse.metrics import Metrics
from koxpulse.settings import load


def test_every_set_setting_reaches_a_child_and_reads_back_the_same() -> None:
    s = load(
        {
            "input": ("a.jsonl", "b.jsonl.gz"),
            "detectors": False,
            "allowed_lateness": 5.0,
            "fraud_dup_min_users": 4,
        },
        env={},
    )
    env = settings_env(s)
    assert env["KOXPULSE_INPUT"] == "a.jsonl,b.jsonl.gz"
    assert env["KOXPULSE_DETECTORS"] == "off"
    assert "KOXPULSE_METRICS_PORT" not in env  # unset stays unset: the child's default
    again = load({}, env=env)
    assert again == s


def test_metrics_of_the_members_are_summed_and_gauges_take_the_maximum(tmp_path: Path) -> None:
    files = []
    for i, (read, windows) in enumerate(((100, 3), (250, 7))):
        m = Metrics()
        m.messages.labels(source="kafka").inc(read)
        m.open_windows.set(windows)
        f = tmp_path / f"m{i}.prom"
        m.write_textfile(str(f))
        files.append(f)
    merged = merge_textfiles(files)
    assert merged.value("koxpulse_messages_read_total", {"source": "kafka"}) == 350
    assert merged.value("koxpulse_open_windows") == 7

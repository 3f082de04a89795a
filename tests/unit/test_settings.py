"""Settings: flags over environment over defaults; README documents every option."""

from __future__ import annotations

from pathlib import Path

import pytest

from koxpulse.errors import ConfigError
from koxpulse.settings import OPTIONS, Settings, load, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = load({}, env={})
    assert s == Settings()
    assert s.allowed_lateness_ms == 60_000 and s.dedup_horizon_ms == 900_000


def test_env_then_flag_precedence() -> None:
    env = {"KOXPULSE_ALLOWED_LATENESS": "30", "KOXPULSE_INPUT": "a.jsonl, b.jsonl.gz"}
    s = load({}, env=env)
    assert s.allowed_lateness == 30.0 and s.input == ("a.jsonl", "b.jsonl.gz")
    s = load({"allowed_lateness": 5.0}, env=env)
    assert s.allowed_lateness == 5.0


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KOXPULSE_BATCH_LINES='0': must be a positive integer"):
        load({}, env={"KOXPULSE_BATCH_LINES": "0"})
    with pytest.raises(ConfigError, match="KOXPULSE_PROGRESS"):
        load({}, env={"KOXPULSE_PROGRESS": "sometimes"})


def test_settings_are_frozen() -> None:
    s = load({}, env={})
    with pytest.raises(AttributeError):
        s.batch_lines = 3  # type: ignore[misc]


def test_readme_settings_table_is_in_sync() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme
    for opt in OPTIONS:
        assert opt.env.startswith("KOXPULSE_")


def test_detector_thresholds_are_settings_too() -> None:
    s = load(
        {"fraud_cross_min_codes": 7},
        env={"KOXPULSE_FRAUD_DUP_MIN_USERS": "4", "KOXPULSE_DETECT_KPI_THRESHOLD": "0.8"},
    )
    assert s.fraud_params().dup_min_users == 4
    assert s.fraud_params().cross_min_codes == 7
    assert s.detection_params().kpi_threshold == 0.8
    assert load({}, env={}).fraud_params() == type(s.fraud_params())()
    with pytest.raises(ConfigError, match="KOXPULSE_FRAUD_TRAVEL_MAX_KMH"):
        load({}, env={"KOXPULSE_FRAUD_TRAVEL_MAX_KMH": "fast"})

"""One frozen settings object; every option is a ``KOXPULSE_*`` variable and a CLI flag.

The option table below is the single source of truth: the CLI builds its flags
from it, :func:`load` reads flags over environment over defaults, and
``koxpulse settings --markdown`` prints the README table (a test keeps them in sync).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from koxpulse.errors import ConfigError

if TYPE_CHECKING:
    from detectors.fraud import FraudParams
    from koxpulse.detection import DetectionParams


@dataclass(frozen=True, slots=True)
class Option:
    field: str
    flag: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    shown_default: str | None = None  # how the README shows a computed default
    secret: bool = False  # environment only (no flag: argv shows in ps and shell history)

    @property
    def env(self) -> str:
        return "KOXPULSE_" + self.field.upper()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be a number >= 0")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number > 0")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return text

    return parse


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise ValueError("must be on or off")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 0.5:
        raise ValueError("must be a number between 0 and 0.5")
    return value


def _split(text: str) -> tuple[tuple[str, float], ...]:
    """``equal`` or ``control=1,treatment=1`` (weights, normalised when used)."""
    if text.strip().lower() == "equal":
        return ()
    out = []
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        if not sep or not name.strip():
            raise ValueError("must be equal or VARIANT=WEIGHT[,VARIANT=WEIGHT...]")
        w = float(weight)
        if not w > 0:
            raise ValueError(f"weight of {name.strip()} must be > 0")
        out.append((name.strip(), w))
    if len({n for n, _ in out}) != len(out):
        raise ValueError("names a variant twice")
    return tuple(out)


def _path_list(text: str) -> tuple[str, ...]:
    return tuple(p for p in (s.strip() for s in text.split(",")) if p)


def _url_list(text: str) -> tuple[str, ...]:
    urls = _path_list(text)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url.split('@')[-1]!r} is not an http(s) URL")
    return urls


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0-65535 (0: off)")
    return value


DEFAULT_METRICS_PORT = 9108


OPTIONS: tuple[Option, ...] = (
    Option(
        "input",
        "--input",
        (),
        "Event files to replay (.jsonl or .jsonl.gz); repeat the flag, "
        "or comma-separate in the variable",
        _path_list,
        "none",
    ),
    Option(
        "kafka_bootstrap",
        "--kafka",
        "",
        "Kafka bootstrap servers HOST:PORT[,HOST:PORT]; when set, `run` consumes the topics",
    ),
    Option(
        "kafka_topics",
        "--kafka-topics",
        ("kox.scans", "kox.redemptions", "kox.orders", "kox.shipments"),
        "Topics to consume (comma-separated); events are routed by type, not by topic",
        _path_list,
        "kox.scans,kox.redemptions,kox.orders,kox.shipments",
    ),
    Option("kafka_group", "--kafka-group", "koxpulse", "Kafka consumer group id"),
    Option(
        "idle_exit",
        "--idle-exit",
        0.0,
        "Exit 0 once no message has arrived for this many seconds and every window is "
        "emitted (0: run until stopped)",
        _non_negative_float,
    ),
    Option(
        "idle_partition",
        "--idle-partition",
        10.0,
        "Seconds without messages after which a partition no longer holds windows or fraud "
        "detection back (low latency: below --allowed-lateness, e.g. 0.5)",
        _non_negative_float,
    ),
    Option(
        "kafka_security_protocol",
        "--kafka-security-protocol",
        "PLAINTEXT",
        "Kafka security: PLAINTEXT, SSL, SASL_SSL (or SASL_PLAINTEXT, only when asked for); "
        "never downgraded",
        _choice("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"),
    ),
    Option(
        "kafka_sasl_mechanism",
        "--kafka-sasl-mechanism",
        "SCRAM-SHA-512",
        "Kafka SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN",
        _choice("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
    ),
    Option("kafka_sasl_username", "--kafka-sasl-username", "", "Kafka SASL user name"),
    Option(
        "kafka_sasl_password_file",
        "--kafka-sasl-password-file",
        "",
        "File holding the Kafka SASL password (never given on the command line)",
    ),
    Option(
        "kafka_ca",
        "--kafka-ca",
        "",
        "CA bundle that signs the Kafka brokers' certificates (system CAs when empty)",
    ),
    Option("kafka_cert", "--kafka-cert", "", "Client certificate for Kafka mutual TLS (PEM file)"),
    Option("kafka_key", "--kafka-key", "", "Private key of the Kafka client certificate"),
    Option(
        "kafka_hostname_check",
        "--kafka-hostname-check",
        True,
        "Verify that a Kafka broker's certificate names its host: on or off",
        _on_off,
    ),
    Option(
        "recovery_dir",
        "--recovery-dir",
        "",
        "Bytewax recovery store (made by `koxpulse recovery init`); a restarted run resumes "
        "from its last snapshot",
    ),
    Option(
        "snapshot_interval",
        "--snapshot-interval",
        10.0,
        "Seconds between recovery snapshots (Bytewax epoch length)",
        _positive_float,
    ),
    Option(
        "processes",
        "--processes",
        1,
        "Run the dataflow as this many cooperating processes on this machine",
        _positive_int,
    ),
    Option(
        "addresses",
        "--addresses",
        "",
        "Every process of a multi-host cluster as HOST:PORT;HOST:PORT (same list everywhere)",
    ),
    Option(
        "process_id",
        "--process-id",
        0,
        "This process's index in --addresses",
        _non_negative_int,
    ),
    Option(
        "clickhouse",
        "--clickhouse",
        "chdb://./data/chdb",
        "ClickHouse DSN: chdb:///dir (embedded, default) or "
        "http(s)://user:password@host:port/database",
    ),
    Option(
        "database",
        "--database",
        "koxpulse",
        "ClickHouse database for chdb DSNs and http DSNs without a path",
    ),
    Option(
        "clickhouse_ca",
        "--clickhouse-ca",
        "",
        "CA bundle to verify an https ClickHouse "
        "server (system CAs when empty; verification is never turned off)",
    ),
    Option(
        "allowed_lateness",
        "--allowed-lateness",
        60.0,
        "Seconds an event may trail the newest event of its partition before it is late; "
        "also how long fraud alerts wait for their events (low latency: 1)",
        _non_negative_float,
    ),
    Option(
        "dedup_horizon",
        "--dedup-horizon",
        900.0,
        "Seconds of event time an event_id is remembered to drop redeliveries",
        _non_negative_float,
    ),
    Option(
        "dedup_max_ids",
        "--dedup-max-ids",
        2_000_000,
        "Hard cap on remembered event ids (memory bound; oldest dropped first, counted)",
        _positive_int,
    ),
    Option(
        "repeat_lookback_days",
        "--repeat-lookback-days",
        90,
        "Days of order history that make a buyer a repeat buyer",
        _positive_int,
    ),
    Option(
        "batch_lines",
        "--batch-lines",
        2000,
        "Messages per batch handed between dataflow steps",
        _positive_int,
    ),
    Option(
        "gc_full_interval",
        "--gc-full-interval",
        600.0,
        "Seconds between full garbage collections during a run; Python's automatic full "
        "passes, each a stall of up to a second with a live run's state, are off "
        "(0: Python's default)",
        _non_negative_float,
    ),
    Option(
        "sink_batch_rows",
        "--sink-batch-rows",
        50_000,
        "Rows buffered per ClickHouse insert at most",
        _positive_int,
    ),
    Option(
        "sink_flush_interval",
        "--sink-flush-interval",
        2.0,
        "Seconds a buffered row may wait before it is written",
        _non_negative_float,
    ),
    Option(
        "sink_retry_max",
        "--sink-retry-max",
        0.0,
        "Seconds a failing ClickHouse write is retried before the run stops (0: until it works)",
        _non_negative_float,
    ),
    Option(
        "sink_backoff_max",
        "--sink-backoff-max",
        30.0,
        "Longest wait between ClickHouse write retries (seconds; backoff doubles up to it)",
        _positive_float,
    ),
    Option(
        "progress",
        "--progress",
        "auto",
        "Progress line on stderr: auto (only on a TTY), on, off",
        _choice("auto", "on", "off"),
    ),
    Option(
        "metrics_textfile",
        "--metrics-textfile",
        "",
        "Write Prometheus metrics to this file at the end of a replay",
    ),
    Option(
        "store_events",
        "--store-events",
        True,
        "Write every accepted event to the events table (drill-downs, A/B readouts): on or off",
        _on_off,
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        None,
        "Serve Prometheus metrics over HTTP on this port (0: off)",
        _port,
        f"{DEFAULT_METRICS_PORT} with --kafka, else 0",
    ),
    Option(
        "metrics_address",
        "--metrics-address",
        "0.0.0.0",  # noqa: S104 - scraped from another container
        "Address the metrics endpoint listens on",
    ),
    Option(
        "metrics_max_regions",
        "--metrics-max-regions",
        50,
        "Regions with their own KPI metric labels; later ones are reported as `other`",
        _positive_int,
    ),
    Option(
        "metrics_max_channels",
        "--metrics-max-channels",
        10,
        "Channels with their own KPI metric labels; later ones are reported as `other`",
        _positive_int,
    ),
    Option(
        "alertmanager_urls",
        "--alertmanager",
        (),
        "Alertmanager base URLs URL[,URL] (an HA pair gets every alert); empty: no delivery",
        _url_list,
        "none",
    ),
    Option(
        "alertmanager_resend_interval",
        "--alertmanager-resend-interval",
        60.0,
        "Seconds between re-sends of a firing alert (resolved ones: for 5 minutes)",
        _positive_float,
    ),
    Option(
        "alertmanager_queue_size",
        "--alertmanager-queue-size",
        10_000,
        "Alert sends queued per Alertmanager; when full the oldest resend is dropped",
        _positive_int,
    ),
    Option(
        "alertmanager_flush_timeout",
        "--alertmanager-flush-timeout",
        10.0,
        "Seconds to wait at exit for queued new alerts to be delivered",
        _non_negative_float,
    ),
    Option(
        "alertmanager_user",
        "--alertmanager-user",
        "",
        "Basic-auth user for Alertmanager (password from --alertmanager-password-file)",
    ),
    Option(
        "alertmanager_password_file",
        "--alertmanager-password-file",
        "",
        "File holding the Alertmanager basic-auth password",
    ),
    Option(
        "alertmanager_token_file",
        "--alertmanager-token-file",
        "",
        "File holding a bearer token for Alertmanager (instead of basic auth)",
    ),
    Option(
        "alertmanager_ca",
        "--alertmanager-ca",
        "",
        "CA bundle to verify https Alertmanagers (system CAs when empty; never unverified)",
    ),
    Option(
        "alertmanager_dashboard_url",
        "--alertmanager-dashboard-url",
        "",
        "dashboard_url annotation; {region} {channel} {kind} {alert_id} {entity_type} "
        "{entity_id} {starts_at_ms} are filled in",
    ),
    Option(
        "alertmanager_runbook_url",
        "--alertmanager-runbook-url",
        "",
        "runbook_url annotation, with the same placeholders (e.g. .../runbooks#{kind})",
    ),
    Option(
        "detectors",
        "--detectors",
        True,
        "Run the anomaly and fraud detectors: on or off",
        _on_off,
    ),
    Option(
        "grafana_url",
        "--grafana",
        "",
        "Grafana base URL for `koxpulse dashboards push`, e.g. http://grafana:3000",
    ),
    Option(
        "grafana_token",
        "",
        "",
        "Grafana service-account token for `koxpulse dashboards push` (environment only)",
        secret=True,
    ),
    Option(
        "ab_control",
        "--ab-control",
        "control",
        "A/B readouts: the variant every other variant is compared with",
    ),
    Option(
        "ab_split",
        "--ab-split",
        (),
        "A/B readouts: designed split for the sample-ratio check, `equal` or "
        "VARIANT=WEIGHT,... (e.g. control=1,treatment=1)",
        _split,
        "equal",
    ),
    Option(
        "ab_alpha",
        "--ab-alpha",
        0.05,
        "A/B readouts: error rate of tests and intervals (0.05: 95 % intervals)",
        _alpha,
    ),
    Option(
        "ab_planned_users",
        "--ab-planned-users",
        20_000,
        "A/B readouts: users (all arms) at which the always-valid interval is tuned "
        "to be narrowest (its mixing variance)",
        _positive_int,
    ),
    Option(
        "lang", "--lang", "en", "Language of alert summaries: en or zh-CN", _choice("en", "zh-CN")
    ),
    Option(
        "log_level",
        "--log-level",
        "warning",
        "Log level: debug, info, warning, error",
        _choice("debug", "info", "warning", "error"),
    ),
)

# Detector tunables: one option per field of FraudParams and DetectionParams, so every
# threshold is a KOXPULSE_* variable and a flag, with the detectors' own defaults.
_TUNING_HELP = {
    "dup_min_users": "duplicate_code: distinct users of one code that make it suspicious",
    "dup_window_ms": "duplicate_code: window for those users (ms)",
    "dup_max_codes": "duplicate_code: cap on remembered codes (memory bound)",
    "farm_user_min_codes": "reward_farming: distinct codes by one user within the user window",
    "farm_user_window_ms": "reward_farming: user window (ms)",
    "farm_device_min_users": "reward_farming: distinct users on one device in the device window",
    "farm_device_user_window_ms": "reward_farming: device-users window (ms)",
    "farm_device_min_codes": "reward_farming: distinct codes on one shared device in its window",
    "farm_device_code_window_ms": "reward_farming: device-codes window (ms)",
    "farm_device_codes_min_users": "reward_farming: users a device needs for the codes rule",
    "farm_device_outlet_redemptions": "reward_farming: count store-terminal redemptions (on/off)",
    "farm_max_entities": "reward_farming: cap on remembered users and devices",
    "cross_min_codes": "cross_region_scan: distinct codes of a batch scanned outside its region",
    "cross_window_ms": "cross_region_scan: window for those codes (ms)",
    "cross_auth_ttl_ms": "cross_region_scan: how long a batch's authorisation is remembered (ms)",
    "cross_pending_per_batch": "cross_region_scan: scans kept per batch not shipped yet",
    "cross_max_batches": "cross_region_scan: cap on remembered batches",
    "outlet_bucket_ms": "outlet_self_redemption: bucket size (ms)",
    "outlet_ratio": "outlet_self_redemption: multiple of the usual level that fires",
    "outlet_min_count": "outlet_self_redemption: redemptions a bucket needs to fire",
    "outlet_floor": "outlet_self_redemption: lowest usual level assumed per bucket",
    "outlet_warmup_ms": "outlet_self_redemption: history before the rate rule is armed (ms)",
    "outlet_alpha": "outlet_self_redemption: learning rate of the usual level",
    "outlet_burst_min": "outlet_self_redemption: redemptions from one device in the burst window",
    "outlet_burst_window_ms": "outlet_self_redemption: burst window (ms)",
    "outlet_ttl_ms": "outlet_self_redemption: forget an idle outlet after (ms)",
    "outlet_max": "outlet_self_redemption: cap on remembered outlets",
    "travel_max_kmh": "impossible_travel: fastest plausible travel (km/h)",
    "travel_min_km": "impossible_travel: shortest distance that counts (km)",
    "travel_window_ms": "impossible_travel: how long a user's last place is kept (ms)",
    "travel_max_users": (
        "impossible_travel: cap on remembered users, the least recently seen dropped first "
        "(at 1M geolocated users a day that keeps 12 h: every impossible trip up to 10,800 km)"
    ),
    "emit_interval_ms": "fraud: at most one observation per entity per this much event time (ms)",
    "expire_every_ms": "fraud: how often state is expired (ms of event time)",
    "expire_max_jump_ms": "fraud: largest step one automatic expiry takes (ms)",
    "kpi_threshold": "kpi_anomaly: detector score at or above which a bucket is anomalous",
    "kpi_warmup_buckets": "kpi_anomaly: 10-minute buckets of history before alerts",
    "kpi_band_k": "kpi_anomaly: width of the usual band, in robust standard deviations",
    "kpi_min_change": "kpi_anomaly: least change from usual that alerts, relative to usual",
    "kpi_rate_min_denominator": "kpi_anomaly: scans or buyers an hourly rate needs to be judged",
    "kpi_sustain": "kpi_anomaly: buckets in a row outside the band that lower the threshold",
    "kpi_sustain_threshold": "kpi_anomaly: detector score that alerts after a sustained stretch",
    "kpi_early_max_p": "kpi_anomaly: Poisson tail below which a partial 10-minute count "
    "alerts before its bucket is complete (0: off)",
    "outlet_max_p": "high_scan_low_redemption: chance of an outlet's shortfall by luck below "
    "which it fires",
    "kpi_repurchase_rise_after_days": "kpi_anomaly: age of a series before a rising "
    "repurchase rate is judged (days)",
    "kpi_redemption_rise_after_days": "kpi_anomaly: age of a series before a rising "
    "redemption rate is judged (days)",
    "hslr_dev_k": "high_scan_low_redemption: an hour's shortfall of the redemption ratio must "
    "exceed this many times its usual deviation at that hour (0: off)",
    "hslr_ratio": "high_scan_low_redemption: a region x channel fires below this share of "
    "the redemptions an hour's scans usually bring",
    "hslr_recover_ratio": "high_scan_low_redemption: a region x channel resolves above this share",
    "kpi_hour_max_p": "kpi_anomaly: Poisson tail of an hourly count at the least change from "
    "usual below which the hour counts as changed",
    "kpi_hour_sustain": "kpi_anomaly: hourly count buckets in a row outside the band (and "
    "still changed in the latest 10 minutes) that alert whatever the score",
    "outlet_fast_min_expected": "high_scan_low_redemption: expected redemptions over an "
    "outlet's latest 1 to 6 buckets that let it fire without the sustained hour",
    "cross_min_codes_unsold": "cross_region_scan: foreign codes that alert for a batch with "
    "no scan in its authorised region yet",
    "quiet_ms": "alerts: resolve after this much event time without evidence (ms)",
    "outlet_window_buckets": "high_scan_low_redemption: outlet window in 10-minute buckets",
    "outlet_min_expected": "high_scan_low_redemption: expected redemptions an outlet needs",
    "outlet_sustain": "high_scan_low_redemption: low buckets in a row before an outlet fires",
    "fold_into_outlet_ms": "reward_farming: at an outlet reported for self-redemption within "
    "this long, part of that incident (ms)",
}


def _parse_like(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        return _on_off
    if isinstance(default, int):
        return _positive_int
    if isinstance(default, float):
        return _non_negative_float
    return str


def _tuning_options() -> tuple[Option, ...]:
    from detectors.fraud import FraudParams
    from koxpulse.detection import DetectionParams

    out = []
    for prefix, params in (("fraud_", FraudParams()), ("detect_", DetectionParams())):
        for f in fields(params):
            default = getattr(params, f.name)
            out.append(
                Option(
                    prefix + f.name,
                    "--" + (prefix + f.name).replace("_", "-"),
                    default,
                    _TUNING_HELP.get(f.name, f.name.replace("_", " ")),
                    _parse_like(default),
                )
            )
    return tuple(out)


TUNING_OPTIONS = _tuning_options()
OPTIONS_BY_FIELD = {o.field: o for o in OPTIONS}
TUNING_BY_FIELD = {o.field: o for o in TUNING_OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know, fixed before the dataflow starts."""

    input: tuple[str, ...] = ()
    kafka_bootstrap: str = ""
    kafka_topics: tuple[str, ...] = ("kox.scans", "kox.redemptions", "kox.orders", "kox.shipments")
    kafka_group: str = "koxpulse"
    idle_exit: float = 0.0
    idle_partition: float = 10.0
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password_file: str = ""
    kafka_ca: str = ""
    kafka_cert: str = ""
    kafka_key: str = ""
    kafka_hostname_check: bool = True
    recovery_dir: str = ""
    snapshot_interval: float = 10.0
    processes: int = 1
    addresses: str = ""
    process_id: int = 0
    clickhouse: str = "chdb://./data/chdb"
    database: str = "koxpulse"
    clickhouse_ca: str = ""
    allowed_lateness: float = 60.0
    dedup_horizon: float = 900.0
    dedup_max_ids: int = 2_000_000
    repeat_lookback_days: int = 90
    batch_lines: int = 2000
    gc_full_interval: float = 600.0
    sink_batch_rows: int = 50_000
    sink_flush_interval: float = 2.0
    sink_retry_max: float = 0.0
    sink_backoff_max: float = 30.0
    progress: str = "auto"
    metrics_textfile: str = ""
    store_events: bool = True
    metrics_port: int | None = None  # None: DEFAULT_METRICS_PORT in live mode, off otherwise
    metrics_address: str = "0.0.0.0"  # noqa: S104
    metrics_max_regions: int = 50
    metrics_max_channels: int = 10
    alertmanager_urls: tuple[str, ...] = ()
    alertmanager_resend_interval: float = 60.0
    alertmanager_queue_size: int = 10_000
    alertmanager_flush_timeout: float = 10.0
    alertmanager_user: str = ""
    alertmanager_password_file: str = ""
    alertmanager_token_file: str = ""
    alertmanager_ca: str = ""
    alertmanager_dashboard_url: str = ""
    alertmanager_runbook_url: str = ""
    detectors: bool = True
    grafana_url: str = ""
    grafana_token: str = field(default="", repr=False)
    ab_control: str = "control"
    ab_split: tuple[tuple[str, float], ...] = ()
    ab_alpha: float = 0.05
    ab_planned_users: int = 20_000
    lang: str = "en"
    log_level: str = "warning"
    tuning: tuple[tuple[str, Any], ...] = ()  # detector overrides: (option field, value)

    def fraud_params(self) -> FraudParams:
        from detectors.fraud import FraudParams

        given = {k[len("fraud_") :]: v for k, v in self.tuning if k.startswith("fraud_")}
        return FraudParams(**given)

    def detection_params(self) -> DetectionParams:
        from koxpulse.detection import DetectionParams

        given = {k[len("detect_") :]: v for k, v in self.tuning if k.startswith("detect_")}
        return DetectionParams(**given)

    @property
    def effective_metrics_port(self) -> int:
        """The metrics port in force: the default only for live Kafka runs."""
        if self.metrics_port is not None:
            return self.metrics_port
        return DEFAULT_METRICS_PORT if self.kafka_bootstrap else 0

    @property
    def allowed_lateness_ms(self) -> int:
        return round(self.allowed_lateness * 1000)

    @property
    def dedup_horizon_ms(self) -> int:
        return round(self.dedup_horizon * 1000)


_EMPTY_IS_A_VALUE = frozenset({"ab_split"})
"""Options whose parsed empty tuple is a choice (``--ab-split equal``), not "not given"."""


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings: a flag given on the command line wins over the environment, then defaults.

    ``flags`` maps field names to already-parsed values; ``None`` means "not given".
    """
    env = os.environ if env is None else env
    flags = flags or {}
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        given = flags.get(opt.field)
        if given is not None and (given != () or opt.field in _EMPTY_IS_A_VALUE):
            values[opt.field] = given
            continue
        raw = env.get(opt.env)
        if raw is not None and raw != "":
            try:
                values[opt.field] = opt.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{opt.env}={raw!r}: {exc}") from exc
    tuning = []
    for opt in TUNING_OPTIONS:
        given = flags.get(opt.field)
        if given is None:
            raw = env.get(opt.env)
            if raw is None or raw == "":
                continue
            try:
                given = opt.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{opt.env}={raw!r}: {exc}") from exc
        tuning.append((opt.field, given))
    known = {f.name for f in fields(Settings)} - {"tuning"}
    assert known == set(OPTIONS_BY_FIELD), "settings fields and options diverged"
    return Settings(**values, tuning=tuple(tuning))


def markdown_table() -> str:
    """The settings table for README.md."""
    lines = [
        "| variable | flag | default | meaning |",
        "|---|---|---|---|",
    ]
    for o in (*OPTIONS, *TUNING_OPTIONS):
        default = o.shown_default if o.shown_default is not None else str(o.default)
        if isinstance(o.default, bool):
            default = "on" if o.default else "off"
        shown = f"`{default}`" if default else "(empty)"
        flag = f"`{o.flag}`" if o.flag else "(none)"
        lines.append(f"| `{o.env}` | {flag} | {shown} | {o.help} |")
    return "\n".join(lines)

"""The ``koxpulse`` command line.

Misuse and bad configuration print one line and exit 2; any other failure
prints one line and exits 1 (``--debug`` adds the traceback). Nothing else
prints a traceback to a user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from koxpulse import __version__
from koxpulse.errors import ConfigError, KoxpulseError
from koxpulse.experiments.metrics import DEFAULT_METRICS, METRICS
from koxpulse.settings import (
    OPTIONS_BY_FIELD,
    TUNING_BY_FIELD,
    Settings,
    _positive_int,
    load,
    markdown_table,
)

EXIT_USAGE = 2
# every command that talks to Kafka takes the same security options
KAFKA_SECURITY = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password_file",
    "kafka_ca",
    "kafka_cert",
    "kafka_key",
    "kafka_hostname_check",
)
DEFAULT_NAB = Path("../shared/nab")


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse in one line instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_options(p: argparse.ArgumentParser, *names: str) -> None:
    """Add settings flags; their values stay None unless given, so env and defaults apply."""
    for name in names:
        opt = OPTIONS_BY_FIELD.get(name) or TUNING_BY_FIELD[name]
        assert not opt.secret, f"{opt.env} is environment-only: no flag may carry it"
        help_text = f"{opt.help} [env {opt.env}]"
        if name == "input":
            p.add_argument(opt.flag, dest=name, action="append", metavar="PATH", help=help_text)
            continue
        p.add_argument(opt.flag, dest=name, type=_typed(opt.parse, opt.flag), help=help_text)


def _typed(parse: Any, flag: str) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: {exc}") from exc

    convert.__name__ = flag
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="koxpulse",
        description="Streaming KPIs and alerts for one-code-per-item (一物一码) marketing.",
    )
    parser.add_argument("--version", action="version", version=f"koxpulse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="replay event files through the dataflow into ClickHouse",
        description="Replay .jsonl/.jsonl.gz event files through the dataflow into ClickHouse; "
        "every window is flushed at end of input and the command exits 0.",
    )
    _add_options(
        run,
        "input",
        "kafka_bootstrap",
        "kafka_topics",
        "kafka_group",
        *KAFKA_SECURITY,
        "idle_exit",
        "idle_partition",
        "recovery_dir",
        "snapshot_interval",
        "processes",
        "addresses",
        "process_id",
        "clickhouse",
        "database",
        "clickhouse_ca",
        "allowed_lateness",
        "dedup_horizon",
        "dedup_max_ids",
        "repeat_lookback_days",
        "batch_lines",
        "gc_full_interval",
        "sink_batch_rows",
        "sink_flush_interval",
        "sink_retry_max",
        "sink_backoff_max",
        "progress",
        "metrics_textfile",
        "store_events",
        "metrics_port",
        "metrics_address",
        "metrics_max_regions",
        "metrics_max_channels",
        "alertmanager_urls",
        "alertmanager_resend_interval",
        "alertmanager_queue_size",
        "alertmanager_flush_timeout",
        "alertmanager_user",
        "alertmanager_password_file",
        "alertmanager_token_file",
        "alertmanager_ca",
        "alertmanager_dashboard_url",
        "alertmanager_runbook_url",
        "detectors",
        "lang",
        "log_level",
    )
    tuning = run.add_argument_group("detector tuning (defaults are the detectors' own)")
    _add_options(tuning, *TUNING_BY_FIELD)  # type: ignore[arg-type]
    run.add_argument("--summary", action="store_true", help="print a summary for people at the end")

    prod = sub.add_parser(
        "produce",
        help="load an event file into Kafka, each event to its type's topic",
        description="Send every line of an event file to Kafka: each event to its type's topic "
        "(kox.scans, kox.redemptions, kox.orders, kox.shipments); unparseable lines to kox.scans.",
    )
    prod.add_argument("--input", dest="produce_input", required=True, metavar="PATH")
    prod.add_argument(
        "--rate",
        type=_typed(_positive_float, "--rate"),
        default=None,
        help="events per second (default: as fast as possible)",
    )
    _add_options(
        prod,
        "kafka_bootstrap",
        *KAFKA_SECURITY,
    )

    rec = sub.add_parser(
        "recovery",
        help="manage the Bytewax recovery store",
        description="A recovery store lets a killed or stopped run resume from its last "
        "snapshot with exact results. Create it once, then pass --recovery-dir to `run`.",
    )
    rec_sub = rec.add_subparsers(dest="recovery_command", metavar="ACTION", parser_class=_Parser)
    rec_sub.required = True
    rec_init = rec_sub.add_parser("init", help="create an empty recovery store")
    rec_init.add_argument(
        "--partitions",
        type=_typed(_positive_int, "--partitions"),
        default=1,
        help="number of store partitions (at least one; more spread snapshot writes)",
    )
    _add_options(rec_init, "recovery_dir")

    query = sub.add_parser(
        "query",
        help="run one read-only SQL query",
        description="Run one read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) and print "
        "the result. Exact answers need FINAL, e.g. "
        '"SELECT count() FROM koxpulse.kpi_minute FINAL".',
    )
    query.add_argument("sql", help="the query")
    query.add_argument("--format", choices=("csv", "json", "table"), default="table")
    _add_options(query, "clickhouse", "database", "clickhouse_ca")

    sim = sub.add_parser(
        "simulate",
        help="write a realistic, labelled one-code event stream",
        description="Write a realistic one-code event stream (and its ground truth, labels and "
        "expectations beside it). Same seed, same bytes.",
    )
    sim.add_argument("--out", required=True, type=Path, help="output .jsonl or .jsonl.gz file")
    sim.add_argument("--hours", type=_typed(_positive_float, "--hours"), default=48.0)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--scale", type=_typed(_positive_float, "--scale"), default=1.0)
    sim.add_argument("--incidents", action="store_true", help="inject labelled incidents")
    sim.add_argument(
        "--incident-strength",
        type=_typed(_strength, "--incident-strength"),
        default=1.0,
        help="how far the 高扫码低核销 and kpi_anomaly incidents move their series, in (0, 1]: "
        "1 (default) collapses and surges, 0.5 half of each change (redemptions or orders at "
        "about half, scans at 2.5x); fraud incidents keep their form",
    )
    sim.add_argument(
        "--experiment",
        dest="experiments",
        action="append",
        type=_typed(_experiment_spec, "--experiment"),
        metavar="CAMPAIGN:METRIC:EFFECT[:REGION]",
        help="set the treatment's true effect (metric redemption_rate: absolute change of "
        "the redemption probability) for a campaign, in every region or one; repeatable",
    )

    ev = sub.add_parser(
        "evaluate",
        help="score the alerts in ClickHouse against labelled incidents",
        description="Match alerts to labelled incidents (same kind; same entity, or same region "
        "and channel for region-level kinds; alert start from 5 minutes before the incident to "
        "15 minutes after its end) and print incidents, detected, alerts, precision, recall and "
        "detection delay per kind.",
    )
    ev.add_argument("--labels", required=True, type=Path, help="labels file (JSON lines)")
    _add_options(ev, "clickhouse", "database", "clickhouse_ca")

    nab = sub.add_parser(
        "nab",
        help="run or score the Numenta Anomaly Benchmark",
        description="Run a detector over the NAB corpus one value at a time, or score results "
        "exactly as NAB v1.1 does.",
    )
    nab_sub = nab.add_subparsers(dest="nab_command", metavar="ACTION", parser_class=_Parser)
    nab_sub.required = True
    nab_run = nab_sub.add_parser("run", help="write NAB results for a detector")
    nab_run.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_NAB / "data",
        help="NAB data directory (<category>/<name>.csv)",
    )
    nab_run.add_argument(
        "--out", type=Path, default=Path("data/nab-results"), help="results directory (NAB layout)"
    )
    nab_run.add_argument("--detector", default="koxpulse", help="detector name")
    nab_score = nab_sub.add_parser("score", help="score NAB results (standard, low FP, low FN)")
    nab_score.add_argument(
        "--results",
        type=Path,
        default=Path("data/nab-results"),
        help="results directory (NAB layout)",
    )
    nab_score.add_argument("--detector", default=None, help="detector directory to score")
    nab_score.add_argument(
        "--nab", type=Path, default=DEFAULT_NAB, help="NAB directory with labels/ and config/"
    )

    ab = sub.add_parser(
        "ab",
        help="A/B readouts of campaign experiments",
        description="Read campaign experiments from ClickHouse (the ab_users view).",
    )
    ab_sub = ab.add_subparsers(dest="ab_command", metavar="ACTION", parser_class=_Parser)
    ab_sub.required = True
    rep = ab_sub.add_parser(
        "report",
        help="each variant against control: lifts, intervals, split check, verdicts",
        description="Each variant against control for one campaign: users, metric means, "
        "absolute and relative lift with intervals and p-values (CUPED-adjusted where users "
        "have pre-period activity), a sample-ratio-mismatch check, an always-valid sequential "
        "result that stays valid however often it is read, and a verdict in plain words.",
    )
    rep.add_argument("--campaign", required=True, help="campaign_id")
    rep.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        type=_typed(_metric_list, "--metric"),
        metavar="NAME[,NAME]",
        help="metrics to compare (repeatable; default "
        f"{','.join(DEFAULT_METRICS)}; known: {', '.join(METRICS)})",
    )
    rep.add_argument("--format", choices=("table", "json", "html"), default="table")
    rep.add_argument("--out", type=Path, default=None, help="write to this file, not stdout")
    rep.add_argument(
        "--exclude-fraud",
        action="store_true",
        help="leave out users flagged by fraud alerts, or who used a flagged device",
    )
    rep.add_argument("--region", default=None, help="only users first exposed in this region")
    rep.add_argument("--channel", default=None, help="only users first exposed in this channel")
    _add_options(
        rep,
        "clickhouse",
        "database",
        "clickhouse_ca",
        "ab_control",
        "ab_split",
        "ab_alpha",
        "ab_planned_users",
    )

    summ = sub.add_parser("summary", help="print a summary of what is in ClickHouse")
    _add_options(summ, "clickhouse", "database", "clickhouse_ca")

    dash = sub.add_parser(
        "dashboards",
        help="generate the Grafana dashboards, or push them to a Grafana server",
        description="Dashboards are defined in Python (dashboards/) with Grafana's foundation "
        "SDK. `build` writes their JSON, `check` fails when the committed JSON is stale, `push` "
        "uploads them (same uid, overwrite) with the token from KOXPULSE_GRAFANA_TOKEN.",
    )
    dash_sub = dash.add_subparsers(dest="dash_command", metavar="ACTION", parser_class=_Parser)
    dash_sub.required = True
    dash_build = dash_sub.add_parser("build", help="write the dashboards' JSON")
    dash_build.add_argument(
        "--out", type=Path, default=None, help="directory (default: dashboards/json)"
    )
    dash_sub.add_parser("check", help="exit 1 when dashboards/json differs from the definitions")
    dash_push = dash_sub.add_parser(
        "push", help="upload the dashboards to Grafana (token from KOXPULSE_GRAFANA_TOKEN)"
    )
    _add_options(dash_push, "grafana_url")

    ex = sub.add_parser(
        "explain",
        help="drill down into an alert: which outlets, SKUs, campaigns, devices moved the KPI",
        description="For a kpi_anomaly or high_scan_low_redemption alert, compare the alert's "
        "window with the same hours on previous days, per outlet, SKU, campaign and device, and "
        "rank the values by their share of the change; say which dimension explains most of it. "
        "For other kinds, print the alert's evidence.",
    )
    ex.add_argument("alert_id", help="the alert's id (alerts.alert_id)")
    ex.add_argument("--format", choices=("table", "json"), default="table")
    ex.add_argument(
        "--baseline-days",
        type=_typed(_positive_int, "--baseline-days"),
        default=None,
        help="previous days to compare with (default 7; days without data are skipped)",
    )
    _add_options(ex, "clickhouse", "database", "clickhouse_ca")

    rep = sub.add_parser(
        "report",
        help="write a self-contained HTML report (charts, alerts, drill-downs, dead letters)",
        description="One HTML file that opens without a network: KPI charts per region and "
        "channel with alert markers, the alert list with summaries and drill-downs, and "
        "dead-letter counts. Readable on a phone.",
    )
    rep.add_argument("--out", required=True, type=Path, help="output .html file")
    rep.add_argument(
        "--since",
        default=None,
        help="start of the report: a duration back from the newest data (36h, 7d) or an "
        "RFC 3339 time (default: everything)",
    )
    _add_options(rep, "clickhouse", "database", "clickhouse_ca")

    st = sub.add_parser("settings", help="print the effective settings, or the README table")
    st.add_argument("--markdown", action="store_true", help="print the settings table")
    return parser


def _metric_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(
            f"unknown metric {', '.join(unknown) or '(none)'}; known: " + ", ".join(METRICS)
        )
    return names


def _experiment_spec(text: str) -> Any:
    from koxpulse.simulator.experiment import parse_spec

    return parse_spec(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _strength(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError("must be > 0 and <= 1")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    flags = {k: v for k, v in vars(args).items() if k in OPTIONS_BY_FIELD or k in TUNING_BY_FIELD}
    if flags.get("input"):
        flags["input"] = tuple(p for arg in flags["input"] for p in arg.split(",") if p)
    return load(flags)


def _cmd_run(args: argparse.Namespace) -> int:
    from koxpulse.runner import replay

    settings = _settings(args)
    logging.getLogger().setLevel(settings.log_level.upper())
    result = replay(settings)
    if result.stopped:
        print("koxpulse run: stopped; sinks flushed", file=sys.stderr)
        return 0
    if args.summary:
        from koxpulse.summary import print_summary

        print_summary(settings, result)
    return 0


def _cmd_recovery(args: argparse.Namespace) -> int:
    from bytewax.recovery import init_db_dir

    settings = _settings(args)
    if not settings.recovery_dir:
        raise ConfigError("give --recovery-dir DIR (or KOXPULSE_RECOVERY_DIR)")
    path = Path(settings.recovery_dir)
    if path.is_dir() and any(path.glob("part-*.sqlite3")):
        raise ConfigError(f"recovery store {path} already exists; remove it to start over")
    path.mkdir(parents=True, exist_ok=True)
    count = args.partitions
    init_db_dir(path, count)
    print(f"recovery store {path}: {count} partition{'s' if count > 1 else ''}")
    return 0


def _cmd_produce(args: argparse.Namespace) -> int:
    from koxpulse.produce import produce

    settings = _settings(args)
    if not Path(args.produce_input).is_file():
        raise ConfigError(f"input file {args.produce_input} does not exist")
    result = produce(settings, args.produce_input, args.rate)
    topics = ", ".join(f"{t} {n:,}" for t, n in sorted(result.by_topic.items()))
    print(f"produced {result.messages:,} messages in {result.seconds:.1f} s ({topics})")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from koxpulse.query import check_read_only, format_rows, run_query
    from koxpulse.runner import clickhouse_target
    from sinks.clickhouse import connect

    check_read_only(args.sql)  # refuse before opening anything
    settings = _settings(args)
    client = connect(clickhouse_target(settings))
    try:
        columns, rows = run_query(client, args.sql)
    finally:
        client.close()
    sys.stdout.write(format_rows(columns, rows, args.format))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    name = args.out.name
    if not (name.endswith(".jsonl") or name.endswith(".jsonl.gz")):
        raise ConfigError(f"--out {args.out}: the file name must end in .jsonl or .jsonl.gz")
    if not args.out.parent.exists():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    from koxpulse.simulator import companion_paths, simulate

    summary = simulate(
        args.out,
        hours=args.hours,
        seed=args.seed,
        scale=args.scale,
        incidents=args.incidents,
        experiments=tuple(args.experiments or ()),
        strength=args.incident_strength,
    )
    paths = companion_paths(args.out)
    print(
        f"wrote {args.out}: {summary.lines:,} lines, {summary.valid_events:,} valid events, "
        f"{summary.duplicates:,} duplicates, {summary.invalid_lines:,} invalid, "
        f"{summary.late_events:,} late, {summary.incidents} labelled incidents"
    )
    for label in ("truth", "labels", "expected"):
        print(f"  {label}: {getattr(paths, label)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from koxpulse.evaluate import (
        ScoredAlert,
        format_overall_delay,
        format_scores,
        incident_delays,
        load_labels,
        score,
    )
    from koxpulse.runner import clickhouse_target
    from sinks.clickhouse import connect
    from sinks.tables import quote_ident

    incidents = load_labels(args.labels)
    settings = _settings(args)
    target = clickhouse_target(settings)
    client = connect(target)
    try:
        rows = client.query(
            "SELECT alert_id, kind, entity_type, entity_id, region, channel, "
            "toUnixTimestamp64Milli(starts_at) "
            f"FROM {quote_ident(target.database)}.alerts FINAL",
            settings={"readonly": 1},
        ).result_rows
    finally:
        client.close()
    alerts = [ScoredAlert(*r) for r in rows]
    sys.stdout.write(format_scores(score(alerts, incidents)))
    sys.stdout.write(format_overall_delay(incident_delays(alerts, incidents)))
    return 0


def _cmd_nab(args: argparse.Namespace) -> int:
    if args.nab_command == "run":
        from koxpulse.nab.runner import DETECTORS, run_nab

        if args.detector not in DETECTORS:
            raise ConfigError(
                f"--detector {args.detector!r}: known detectors are {', '.join(sorted(DETECTORS))}"
            )
        if not args.data.is_dir():
            raise ConfigError(f"--data {args.data}: not a directory")
        summary = run_nab(args.data, args.out, args.detector)
        print(
            f"{summary.detector}: {summary.files} files, {summary.rows:,} rows in "
            f"{summary.seconds:.1f} s -> {args.out / summary.detector}"
        )
        return 0
    from koxpulse.nab.scoring import format_report, score_results

    if not args.results.is_dir():
        raise ConfigError(f"--results {args.results}: not a directory (run `koxpulse nab run`)")
    if not (args.nab / "labels").is_dir():
        raise ConfigError(f"--nab {args.nab}: no labels/ directory there")
    try:
        scores = score_results(args.results, args.nab, args.detector)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"cannot score {args.results}: {exc}") from exc
    print(format_report(scores, args.detector or ""))
    return 0


def _cmd_ab(args: argparse.Namespace) -> int:
    from koxpulse.experiments.readout import campaign_report
    from koxpulse.experiments.render import RENDERERS
    from koxpulse.experiments.report import Design
    from koxpulse.runner import clickhouse_target
    from sinks.clickhouse import connect

    settings = _settings(args)
    metrics = tuple(dict.fromkeys(m for group in args.metrics or [DEFAULT_METRICS] for m in group))
    design = Design(
        control=settings.ab_control,
        split=settings.ab_split,
        alpha=settings.ab_alpha,
        planned_users=settings.ab_planned_users,
        exclude_fraud=args.exclude_fraud,
    )
    filters = {k: v for k in ("region", "channel") if (v := getattr(args, k))}
    if args.out is not None and not args.out.parent.exists():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    target = clickhouse_target(settings)
    client = connect(target)
    try:
        report = campaign_report(client, target.database, args.campaign, metrics, design, filters)
    finally:
        client.close()
    text = RENDERERS[args.format](report)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from koxpulse.summary import print_summary

    print_summary(_settings(args), None)
    return 0


def _cmd_dashboards(args: argparse.Namespace) -> int:
    if args.dash_command == "build":
        from dashboards.build import JSON_DIR, write

        for path in write(args.out or JSON_DIR):
            print(path)
        return 0
    if args.dash_command == "check":
        from dashboards.build import stale

        bad = stale()
        if bad:
            print("stale dashboard JSON: " + ", ".join(bad) + " (run koxpulse dashboards build)")
            return 1
        print("dashboards/json is up to date")
        return 0
    from dashboards.push import push

    settings = _settings(args)
    for d in push(settings.grafana_url, settings.grafana_token):
        version = f"version {d.version}" if d.version is not None else "saved"
        print(f"{d.uid}: {d.title} ({version}) {d.url}".rstrip())
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import json

    from koxpulse.explain import DEFAULT_BASELINE_DAYS, explain, format_table
    from koxpulse.runner import clickhouse_target
    from sinks.clickhouse import connect

    settings = _settings(args)
    target = clickhouse_target(settings)
    client = connect(target)
    try:
        result = explain(
            client,
            target.database,
            args.alert_id,
            baseline_days=args.baseline_days or DEFAULT_BASELINE_DAYS,
        )
    finally:
        client.close()
    if args.format == "json":
        print(json.dumps(result.to_json(), ensure_ascii=False, sort_keys=True))
    else:
        sys.stdout.write(format_table(result))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from koxpulse.report import write_report

    if not args.out.name.endswith((".html", ".htm")):
        raise ConfigError(f"--out {args.out}: the file name must end in .html")
    if not args.out.parent.exists():
        raise ConfigError(f"--out {args.out}: directory {args.out.parent} does not exist")
    summary = write_report(_settings(args), args.out, since=args.since)
    print(
        f"wrote {args.out}: {summary.charts} charts, {summary.alerts} alerts, "
        f"{summary.dead_letters:,} dead letters, {summary.size_bytes / 1024:,.0f} KiB"
    )
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    settings = load()
    for name in OPTIONS_BY_FIELD:
        value = getattr(settings, name)
        if name == "clickhouse":
            from koxpulse.runner import clickhouse_target

            value = clickhouse_target(settings).redacted
        elif OPTIONS_BY_FIELD[name].secret and value:
            value = "***"
        elif name == "ab_split":
            value = ",".join(f"{k}={w:g}" for k, w in value) or "equal"
        elif name == "metrics_port":
            value = settings.effective_metrics_port
        elif isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        print(f"{OPTIONS_BY_FIELD[name].env}={value}")
    return 0


def _quiet_client_libraries(record: logging.LogRecord) -> bool:
    return not record.name.startswith(("urllib3", "clickhouse_connect", "librdkafka"))


COMMANDS = {
    "run": _cmd_run,
    "query": _cmd_query,
    "produce": _cmd_produce,
    "recovery": _cmd_recovery,
    "simulate": _cmd_simulate,
    "evaluate": _cmd_evaluate,
    "nab": _cmd_nab,
    "ab": _cmd_ab,
    "summary": _cmd_summary,
    "dashboards": _cmd_dashboards,
    "explain": _cmd_explain,
    "report": _cmd_report,
    "settings": _cmd_settings,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:
        os.environ["RUST_BACKTRACE"] = "0"  # Bytewax's panics would print a Rust backtrace
        # Client libraries log every retry; the one-line error we print says what matters.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_client_libraries)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"koxpulse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KoxpulseError as exc:
        if args.debug:
            raise
        print(f"koxpulse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"koxpulse {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug: still one line for the user, the traceback on --debug
        if args.debug:
            raise
        print(
            f"koxpulse {args.command}: internal error: {exc.__class__.__name__}: {exc}"
            " (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

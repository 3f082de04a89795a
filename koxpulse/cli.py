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
from koxpulse.settings import (
    OPTIONS_BY_FIELD,
    TUNING_BY_FIELD,
    Settings,
    load,
    markdown_table,
)

EXIT_USAGE = 2
DEFAULT_NAB = Path("../shared/nab")


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse in one line instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_options(p: argparse.ArgumentParser, *names: str) -> None:
    """Add settings flags; their values stay None unless given, so env and defaults apply."""
    for name in names:
        opt = OPTIONS_BY_FIELD.get(name) or TUNING_BY_FIELD[name]
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
        "idle_exit",
        "idle_partition",
        "clickhouse",
        "database",
        "clickhouse_ca",
        "allowed_lateness",
        "dedup_horizon",
        "dedup_max_ids",
        "repeat_lookback_days",
        "batch_lines",
        "sink_batch_rows",
        "sink_flush_interval",
        "progress",
        "metrics_textfile",
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
    _add_options(prod, "kafka_bootstrap")

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

    summ = sub.add_parser("summary", help="print a summary of what is in ClickHouse")
    _add_options(summ, "clickhouse", "database", "clickhouse_ca")

    st = sub.add_parser("settings", help="print the effective settings, or the README table")
    st.add_argument("--markdown", action="store_true", help="print the settings table")
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
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
    if args.summary:
        from koxpulse.summary import print_summary

        print_summary(settings, result)
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
        args.out, hours=args.hours, seed=args.seed, scale=args.scale, incidents=args.incidents
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
    from koxpulse.evaluate import ScoredAlert, format_scores, load_labels, score
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


def _cmd_summary(args: argparse.Namespace) -> int:
    from koxpulse.summary import print_summary

    print_summary(_settings(args), None)
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
        elif name == "metrics_port":
            value = settings.effective_metrics_port
        elif isinstance(value, tuple):
            value = ",".join(value)
        print(f"{OPTIONS_BY_FIELD[name].env}={value}")
    return 0


def _quiet_client_libraries(record: logging.LogRecord) -> bool:
    return not record.name.startswith(("urllib3", "clickhouse_connect", "librdkafka"))


COMMANDS = {
    "run": _cmd_run,
    "query": _cmd_query,
    "produce": _cmd_produce,
    "simulate": _cmd_simulate,
    "evaluate": _cmd_evaluate,
    "nab": _cmd_nab,
    "summary": _cmd_summary,
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

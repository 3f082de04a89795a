"""CLI misuse: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, None),
        (("bogus",), {}, "invalid choice: 'bogus'"),
        (("run", "--input"), {}, "expected one argument"),
        (
            ("run", "--input", "/no/such/file.jsonl"),
            {},
            "input file /no/such/file.jsonl does not exist",
        ),
        (("run",), {}, "no input"),
        (("run", "--input", "x", "--allowed-lateness", "soon"), {}, "--allowed-lateness 'soon'"),
        (("run", "--input", "x", "--clickhouse", "mysql://h/db"), {}, None),
        (("query", "DROP TABLE koxpulse.kpi_minute"), {}, "only read-only queries"),
        (("query",), {}, "required: sql"),
        (("query", "SELECT 1", "--format", "xml"), {}, "invalid choice: 'xml'"),
        (("simulate", "--out", "x.csv", "--hours", "1"), {}, "must end in .jsonl"),
        (("simulate", "--out", "x.jsonl", "--hours", "-1"), {}, "--hours '-1': must be > 0"),
        (
            ("simulate", "--out", "x.jsonl", "--incidents", "--incident-strength", "2"),
            {},
            "--incident-strength '2': must be > 0 and <= 1",
        ),
        (("run", "--input", "x"), {"KOXPULSE_BATCH_LINES": "zero"}, "KOXPULSE_BATCH_LINES"),
    ],
)
def test_misuse_exits_2_with_one_line(
    args: tuple[str, ...], env: dict[str, str], expected: str | None, tmp_path: Path
) -> None:
    if "x" in args:  # an existing input so that only the option under test is wrong
        (tmp_path / "x").write_text("")
        args = tuple(str(tmp_path / "x") if a == "x" else a for a in args)
    proc = run_cli(*args, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    if args:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if expected:
        assert expected in proc.stderr


def test_unreachable_clickhouse_server_is_a_clear_failure_without_password(tmp_path: Path) -> None:
    data = tmp_path / "e.jsonl"
    data.write_text("")
    proc = run_cli(
        "run",
        "--input",
        str(data),
        "--clickhouse",
        "http://alice:s3cret@127.0.0.1:9/koxpulse",
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "cannot connect to ClickHouse at http://alice:***@127.0.0.1:9/koxpulse" in line
    assert "s3cret" not in proc.stderr


def test_help_for_every_command() -> None:
    for cmd in ("run", "query", "simulate", "summary", "settings"):
        proc = run_cli(cmd, "--help", timeout=60)
        assert proc.returncode == 0 and "usage: koxpulse " + cmd in proc.stdout

"""Alert-delivery and metrics flags: misuse is one line on stderr and exit 2, no secret shown."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--metrics-port", "70000"), "--metrics-port '70000': must be a port number 0-65535"),
        (("--alertmanager", "am:9093"), "'am:9093' is not an http(s) URL"),
        (
            ("--alertmanager", "http://kox:hunter2@am:9093"),
            "--alertmanager http://am:9093: put no credentials in the URL",
        ),
        (
            ("--alertmanager", "http://am:9093", "--alertmanager-token-file", "/no/token"),
            "--alertmanager-token-file /no/token: cannot read it",
        ),
        (
            ("--alertmanager", "http://am:9093", "--alertmanager-runbook-url", "https://w/{x}"),
            "unknown placeholder {x}",
        ),
        (("--alertmanager-resend-interval", "0"), "must be a number > 0"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    args: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    data = tmp_path / "e.jsonl"
    data.write_text("")
    proc = run_cli(
        "run", "--input", str(data), "--clickhouse", f"chdb://{tmp_path / 'ch'}", *args,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_metrics_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    data = tmp_path / "e.jsonl"
    data.write_text("")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(
            "run", "--input", str(data), "--clickhouse", f"chdb://{tmp_path / 'ch'}",
            "--metrics-port", str(port), "--metrics-address", "127.0.0.1", timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

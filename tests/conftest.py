"""Shared fixtures. chDB allows one data directory per process, so in-process tests
share one directory and isolate themselves with a database each; end-to-end tests
run the CLI in subprocesses with directories of their own."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KOXPULSE = [sys.executable, "-m", "koxpulse.cli"]
_db_ids = itertools.count()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-session")


@pytest.fixture(scope="session")
def chdb_client(chdb_dir: Path) -> Iterator[object]:
    from sinks.clickhouse import ClickHouseTarget, connect

    client = connect(ClickHouseTarget.parse(f"chdb://{chdb_dir}"))
    yield client
    client.close()


@pytest.fixture
def database(chdb_client: object) -> str:
    return f"koxpulse_t{os.getpid()}_{next(_db_ids)}"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KOXPULSE_")}
    full_env.update(env or {})
    return subprocess.run(
        [*KOXPULSE, *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=timeout
    )

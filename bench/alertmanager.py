"""A real Alertmanager for the latency benchmark (Debian's prometheus-alertmanager).

Started as ``tests/integration/am.py`` does (free loopback port, own storage, clustering
off), with a receiver that notifies nobody: the benchmark only asks its v2 API which
alerts it holds.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.tansu import free_port

CONFIG = """\
route:
  receiver: nobody
  group_by: ['...']
  group_wait: 1h
receivers:
  - name: nobody
"""


def binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@contextlib.contextmanager
def alertmanager(workdir: Path) -> Iterator[str | None]:
    """Yields its URL, or None when Alertmanager is not installed (``make tools``)."""
    exe = binary()
    if exe is None:
        yield None
        return
    port = free_port()
    storage = workdir / f"am-{port}"
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "alertmanager.yml").write_text(CONFIG)
    url = f"http://127.0.0.1:{port}"
    with (storage / "alertmanager.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={storage / 'alertmanager.yml'}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: Alertmanager did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def alerts(url: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=timeout) as r:
        return list(json.loads(r.read()))

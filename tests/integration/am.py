"""A real Alertmanager for tests: Debian's prometheus-alertmanager 0.25 (``make tools``).

Each instance runs on a free loopback port with its own storage directory and
clustering off (``--cluster.listen-address=``). Its one receiver is a webhook on
another loopback port, served by :class:`Notifications`, which records what
Alertmanager notified, so tests see both sides: what Alertmanager stores
(``GET /api/v2/alerts``) and what it sends on.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port

CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: hook
  group_by: ['...']   # every alert its own group: one notification per alert
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/
        send_resolved: true
"""


def binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        pytest.fail("Alertmanager is not installed: run `make tools` (prometheus-alertmanager)")
    return path


class Notifications:
    """The webhook receiver: every alert of every notification, in arrival order."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.alerts.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, alert_id: str, status: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                a
                for a in self.alerts
                if a["labels"].get("alert_id") == alert_id
                and (status is None or a["status"] == status)
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """One Alertmanager process; :meth:`stop` and :meth:`start` keep port and storage."""

    def __init__(
        self,
        workdir: Path,
        hook_port: int,
        port: int | None = None,
        *,
        web_config: Path | None = None,
        ca_file: Path | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.web_config = web_config
        scheme = "https" if web_config is not None and ca_file is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._headers = (
            {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()}
            if auth
            else {}
        )
        self.storage = workdir / f"am-{self.port}"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config = self.storage / "alertmanager.yml"
        self.config.write_text(CONFIG.format(hook_port=hook_port))
        self.log = self.storage / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary(),
                    f"--config.file={self.config}",
                    f"--storage.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                    *([f"--web.config.file={self.web_config}"] if self.web_config else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self._ready(), 20, f"Alertmanager on {self.url} ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited: {self.log.read_text()[-2000:]}")
        try:
            with self._get("/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _get(self, path: str, timeout: float = 5) -> Any:
        request = urllib.request.Request(self.url + path, headers=self._headers)
        return urllib.request.urlopen(request, timeout=timeout, context=self._context)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds as active (``GET /api/v2/alerts``; resolved ones drop out)."""
        with self._get("/api/v2/alerts") as r:
            return list(json.loads(r.read()))

    def received(self) -> dict[str, float]:
        """``alertmanager_alerts_received_total`` by status, from its own metrics."""
        with self._get("/metrics") as r:
            text = r.read().decode()
        out = {"firing": 0.0, "resolved": 0.0}
        for line in text.splitlines():
            if line.startswith("alertmanager_alerts_received_total{"):
                status = line.split('status="')[1].split('"')[0]
                out[status] += float(line.rsplit(" ", 1)[1])
        return out


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)

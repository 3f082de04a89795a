"""`koxpulse dashboards push` against a stand-in for Grafana's HTTP API.

No Grafana server can run here (none is packaged for this machine, and nothing may be
downloaded), so a small HTTP server plays Grafana: it checks every request the way
Grafana would (bearer token, paths, JSON bodies), remembers folders and dashboards by
uid, and answers like Grafana's API (``POST /api/dashboards/db`` returns uid, version,
url). The CLI runs in a subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import run_cli

TOKEN = "glsa_test_token_0123456789"
UIDS = {"koxpulse-regional-kpis", "koxpulse-alerts-fraud", "koxpulse-pipeline-health"}


@dataclass
class FakeGrafana:
    token: str = TOKEN
    folders: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def make_handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._reply(401, {"message": "invalid API key"})
                return False
            return True

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, None))
            if not self._authorised():
                return
            if self.path.startswith("/api/folders/"):
                uid = self.path.rsplit("/", 1)[1]
                if uid in state.folders:
                    self._reply(200, {"uid": uid, "title": state.folders[uid]})
                else:
                    self._reply(404, {"message": "folder not found"})
                return
            self._reply(404, {"message": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            state.requests.append(("POST", self.path, body))
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                state.problems.append(f"{self.path}: not JSON")
            if not self._authorised():
                return
            if self.path == "/api/folders":
                if body.get("uid") in state.folders:
                    self._reply(409, {"message": "a folder with the same uid already exists"})
                    return
                state.folders[body["uid"]] = body["title"]
                self._reply(200, {"uid": body["uid"], "title": body["title"]})
                return
            if self.path == "/api/dashboards/db":
                dash = body["dashboard"]
                if body.get("folderUid") not in state.folders:
                    self._reply(400, {"message": "folder not found"})
                    return
                if dash.get("id") is not None:
                    state.problems.append("dashboard posted with an id")
                uid = dash["uid"]
                if uid in state.dashboards and not body.get("overwrite"):
                    self._reply(412, {"status": "name-exists", "message": "exists"})
                    return
                state.versions[uid] = state.versions.get(uid, 0) + 1
                state.dashboards[uid] = dash
                self._reply(
                    200,
                    {
                        "id": len(state.dashboards),
                        "uid": uid,
                        "url": f"/d/{uid}/x",
                        "status": "success",
                        "version": state.versions[uid],
                    },
                )
                return
            self._reply(404, {"message": "not found"})

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def push(url: str, token: str | None = TOKEN, *extra: str):
    env = {"KOXPULSE_GRAFANA_TOKEN": token} if token is not None else {}
    return run_cli("dashboards", "push", "--grafana", url, *extra, env=env, timeout=120)


def test_push_uploads_every_dashboard_into_its_folder_idempotently(grafana) -> None:
    url, state = grafana
    first = push(url)
    assert first.returncode == 0, first.stderr
    assert state.folders == {"koxpulse": "koxpulse"}
    assert set(state.dashboards) == UIDS
    assert state.problems == []
    posts = [r for r in state.requests if r[:2] == ("POST", "/api/dashboards/db")]
    assert len(posts) == 3
    for _, _, body in posts:
        assert body["overwrite"] is True and body["folderUid"] == "koxpulse"
    regional = state.dashboards["koxpulse-regional-kpis"]
    assert regional["title"] == "koxpulse · Regional KPIs"
    assert len(regional["panels"]) == 8
    assert "koxpulse-regional-kpis: koxpulse · Regional KPIs (version 1)" in first.stdout

    second = push(url)
    assert second.returncode == 0, second.stderr
    assert set(state.dashboards) == UIDS  # same uids, replaced rather than added
    assert state.versions == dict.fromkeys(UIDS, 2)
    assert len([r for r in state.requests if r[:2] == ("POST", "/api/folders")]) == 1
    assert "(version 2)" in second.stdout
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


def test_a_refused_token_is_one_line_exit_2_without_the_token(grafana) -> None:
    url, state = grafana
    proc = push(url, "wrong-token-secret")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"koxpulse dashboards: error: Grafana at {url} refused the token (401 Unauthorized): "
        "check KOXPULSE_GRAFANA_TOKEN and that its service account may edit dashboards"
    ]
    assert "wrong-token-secret" not in proc.stderr + proc.stdout
    assert state.dashboards == {}


def test_missing_token_or_url_is_a_usage_error(grafana) -> None:
    url, state = grafana
    proc = push(url, None)
    assert proc.returncode == 2
    assert "set KOXPULSE_GRAFANA_TOKEN" in proc.stderr
    proc = run_cli("dashboards", "push", env={"KOXPULSE_GRAFANA_TOKEN": TOKEN}, timeout=60)
    assert proc.returncode == 2 and "pass --grafana URL" in proc.stderr
    proc = push("http://admin:pw@127.0.0.1:1")
    assert proc.returncode == 2 and "no credentials in the URL" in proc.stderr
    assert "pw" not in proc.stderr.replace("push", "")
    assert state.requests == []


def test_an_unreachable_grafana_is_exit_1() -> None:
    proc = push("http://127.0.0.1:9")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "koxpulse dashboards: error: cannot reach Grafana at http://127.0.0.1:9: "
        "[Errno 111] Connection refused"
    )


def test_the_token_has_no_flag() -> None:
    proc = run_cli("dashboards", "push", "--grafana-token", "x", timeout=60)
    assert proc.returncode == 2 and "unrecognized arguments: --grafana-token" in proc.stderr

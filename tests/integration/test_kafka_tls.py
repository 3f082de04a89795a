"""Kafka over TLS: it works when the certificates are right, and fails fast, clearly and
without a byte of plaintext when they are not (no silent downgrade)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from koxpulse.simulator import companion_paths
from tests.conftest import run_cli
from tests.integration.conftest import tansu
from tests.integration.test_kafka_replay import late_free_stream
from tests.integration.test_replay_exact import KPI_SQL, assert_kpis_equal, query
from tests.integration.tls import Certs, make_certs, recorder, tls_proxy


def tls_run(address: str, ca: Path, tmp_path: Path, *extra: str):
    started = time.monotonic()
    proc = run_cli(
        "run",
        "--kafka",
        address,
        "--kafka-security-protocol",
        "SSL",
        "--kafka-ca",
        str(ca),
        "--clickhouse",
        f"chdb://{tmp_path / 'ch'}",
        *extra,
        timeout=120,
    )
    return proc, time.monotonic() - started


def assert_one_line_failure(proc, elapsed: float, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach Kafka at localhost" in lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert elapsed < 45


def test_tls_to_a_listener_without_tls_sends_only_a_tls_handshake(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    with recorder() as (port, received):
        proc, elapsed = tls_run(f"localhost:{port}", certs.ca, tmp_path)
    assert_one_line_failure(proc, elapsed)
    assert received, "koxpulse never connected"
    for first in received:
        # 0x16 0x03: a TLS handshake record; a plaintext Kafka request starts 0x00 (length)
        assert first[:2] == b"\x16\x03", first[:16]


def test_tls_to_a_plaintext_broker_fails_fast_naming_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    with tansu(topics=()) as address:
        port = address.rsplit(":", 1)[1]
        proc, elapsed = tls_run(f"localhost:{port}", certs.ca, tmp_path)
    assert_one_line_failure(proc, elapsed, "SSL")


def proxied_broker(certs: Certs):
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    port = int(listen.getsockname()[1])
    return listen, port


def test_a_wrong_ca_fails_fast_and_the_right_one_carries_the_stream(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    other = make_certs(tmp_path / "other", name="other")
    listen, port = proxied_broker(certs)
    with tansu(advertised=f"localhost:{port}") as direct:
        host, direct_port = direct.rsplit(":", 1)
        with tls_proxy(listen, (host, int(direct_port)), certs):
            proc, elapsed = tls_run(f"localhost:{port}", other.ca, tmp_path)
            assert_one_line_failure(proc, elapsed, "certificate verify failed")

            stream, sent = late_free_stream(tmp_path, hours=1, seed=8, scale=0.05)
            tls = ("--kafka-security-protocol", "SSL", "--kafka-ca", str(certs.ca))
            p = run_cli("produce", "--input", str(sent), "--kafka", f"localhost:{port}", *tls)
            assert p.returncode == 0, p.stderr
            proc, _ = tls_run(
                f"localhost:{port}",
                certs.ca,
                tmp_path,
                "--idle-exit",
                "4",
                "--idle-partition",
                "600",
                "--detectors",
                "off",
            )
            assert proc.returncode == 0, proc.stderr
    truth = [json.loads(x) for x in companion_paths(stream).truth.read_text().splitlines()]
    assert_kpis_equal(query(f"chdb://{tmp_path / 'ch'}", KPI_SQL), truth)


def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", host="kafka.other.example")
    listen, port = proxied_broker(certs)
    with tansu(topics=(), advertised=f"localhost:{port}") as direct:
        host, direct_port = direct.rsplit(":", 1)
        with tls_proxy(listen, (host, int(direct_port)), certs):
            proc, elapsed = tls_run(f"localhost:{port}", certs.ca, tmp_path)
    assert_one_line_failure(proc, elapsed)
    assert "localhost" in proc.stderr

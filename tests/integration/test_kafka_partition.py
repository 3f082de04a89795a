"""One Kafka source partition against the real broker: where it starts, when it ends.

These drive :class:`KafkaPartition` directly (no dataflow) so that the order of
librdkafka's events can be arranged on purpose.
"""

from __future__ import annotations

import itertools
import time

from confluent_kafka import Producer

from koxpulse.sources.kafka import IdleExit, KafkaPartition
from tests.integration.conftest import create_topic

_ids = itertools.count()


def fill(broker: str, n: int) -> str:
    topic = f"t.partition.{next(_ids)}"
    create_topic(broker, topic, partitions=1)
    p = Producer({"bootstrap.servers": broker, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=b'{"n": %d}' % i, partition=0)
    assert p.flush(10) == 0
    return topic


def partition(
    broker: str,
    topic: str,
    *,
    batch: int,
    idle_exit: float | IdleExit | None,
    resume: int | None = None,
) -> KafkaPartition:
    config = {
        "bootstrap.servers": broker,
        "group.id": f"g-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "session.timeout.ms": 6000,
    }
    return KafkaPartition(
        config,
        topic,
        0,
        resume,
        batch_size=batch,
        idle_exit=IdleExit(idle_exit) if isinstance(idle_exit, float) else idle_exit,
        idle_partition_s=600,
        clock_ms=lambda: 0,
    )


def drain(part: KafkaPartition, seconds: float) -> tuple[list[int], bool]:
    """Offsets handed out until the partition ends or ``seconds`` pass; and whether it ended."""
    offsets: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for b in part.next_batch():
                offsets.extend(b.positions)
        except StopIteration:
            return offsets, True
        time.sleep(0.02)
    return offsets, False


def test_end_of_partition_in_the_same_fetch_as_the_last_messages_still_ends_the_run(
    broker: str,
) -> None:
    # The whole partition and librdkafka's end-of-partition event are prefetched before
    # the first read, so one consume() returns the last messages and the end together.
    topic = fill(broker, 300)
    part = partition(broker, topic, batch=10_000, idle_exit=0.5)
    try:
        time.sleep(3)
        offsets, ended = drain(part, 20)
    finally:
        part.close()
    assert offsets == list(range(300))
    assert ended, "the partition never noticed it had been read to its end"


def test_a_partition_read_in_small_batches_ends_after_its_last_message(broker: str) -> None:
    topic = fill(broker, 250)
    part = partition(broker, topic, batch=7, idle_exit=0.5)
    try:
        offsets, ended = drain(part, 20)
    finally:
        part.close()
    assert offsets == list(range(250))
    assert ended


def test_a_resumed_partition_starts_at_its_snapshot(broker: str) -> None:
    topic = fill(broker, 50)
    part = partition(broker, topic, batch=20, idle_exit=0.5, resume=None)
    try:
        first = []
        while len(first) < 20:
            for b in part.next_batch():
                first.extend(b.positions)
            time.sleep(0.02)
        snap = part.snapshot()
    finally:
        part.close()
    assert snap == first[-1] + 1
    again = partition(broker, topic, batch=1000, idle_exit=0.5, resume=snap)
    try:
        offsets, ended = drain(again, 20)
    finally:
        again.close()
    assert offsets == list(range(snap, 50))
    assert ended


def test_without_idle_exit_a_caught_up_partition_keeps_waiting(broker: str) -> None:
    topic = fill(broker, 5)
    part = partition(broker, topic, batch=100, idle_exit=None)
    try:
        offsets, ended = drain(part, 2.5)
    finally:
        part.close()
    assert offsets == list(range(5))
    assert not ended


def test_a_snapshot_before_any_message_resumes_at_the_start_not_at_the_committed_offset(
    broker: str,
) -> None:
    # A stop commits the group's offset; a snapshot taken before this run handed out a
    # message must still say "from where this run started", or a resume would skip the
    # messages read between that snapshot and the stop.
    topic = fill(broker, 30)
    first = partition(broker, topic, batch=100, idle_exit=0.5)
    early = first.snapshot()
    try:
        offsets, ended = drain(first, 20)
    finally:
        first.close()  # commits offset 30 for the group
    assert offsets == list(range(30)) and ended
    again = partition(broker, topic, batch=100, idle_exit=0.5, resume=early)
    try:
        offsets, ended = drain(again, 20)
    finally:
        again.close()
    assert offsets == list(range(30))


def test_a_quiet_partition_keeps_reading_until_every_partition_is_quiet(broker: str) -> None:
    # A sparse topic beside a busy one: the sparse partition is silent for longer than the
    # idle-exit time while the busy one still gets messages, then speaks again. It must
    # read that message; both end together once neither has had one for the idle time.
    sparse, busy = fill(broker, 1), fill(broker, 0)
    idle = IdleExit(0.5)
    parts = {
        "sparse": partition(broker, sparse, batch=100, idle_exit=idle),
        "busy": partition(broker, busy, batch=100, idle_exit=idle),
    }
    read: dict[str, list[int]] = {"sparse": [], "busy": []}
    ended: dict[str, float] = {}
    p = Producer({"bootstrap.servers": broker, "linger.ms": 0})
    start = time.monotonic()
    sent, spoke = 0, False
    try:
        while len(ended) < 2 and time.monotonic() - start < 30:
            elapsed = time.monotonic() - start
            if elapsed < 4 and elapsed > 0.1 * sent:  # the busy partition: 10 a second
                p.produce(busy, value=b"{}", partition=0)
                sent += 1
                p.poll(0)
            if elapsed >= 3 and not spoke:  # the sparse partition after 3 s of silence
                p.produce(sparse, value=b"{}", partition=0)
                assert p.flush(10) == 0
                spoke = True
            for name, part in parts.items():
                if name in ended:
                    continue
                try:
                    for b in part.next_batch():
                        read[name].extend(b.positions)
                except StopIteration:
                    ended[name] = time.monotonic() - start
            time.sleep(0.02)
    finally:
        for part in parts.values():
            part.close()
    assert p.flush(10) == 0
    assert read["sparse"] == [0, 1], "the message after the sparse partition's silence"
    assert read["busy"] == list(range(sent))
    assert sorted(ended) == ["busy", "sparse"], "the partitions never ended"
    # not before the busy partition's last message plus the idle time; together
    assert min(ended.values()) >= 4.4
    assert abs(ended["sparse"] - ended["busy"]) < 0.5

"""The Bytewax face of :class:`sinks.clickhouse.ClickHouseWriter`.

A single sink partition owns the writer: embedded chDB allows one process per
data directory, and one writer per process keeps inserts large. ``snapshot``
flushes, so a recovery snapshot never claims rows that were still buffered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from sinks.clickhouse import ClickHouseWriter

TableRows = tuple[str, Sequence[Sequence[Any]]]


class _WriterPartition(StatefulSinkPartition[TableRows, None]):
    def __init__(self, writer: ClickHouseWriter) -> None:
        self._writer = writer

    def write_batch(self, values: list[TableRows]) -> None:
        for table, rows in values:
            self._writer.add(table, rows)

    def snapshot(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ClickHouseSink(FixedPartitionedSink[TableRows, None]):
    """Takes ``(key, (table, rows))`` items; the key is ignored (one partition).

    ``local`` says whether this process may own the partition: Bytewax gives a
    partition to one of the workers that list it, so in a cluster only the process
    that opened the (embedded) database lists it, and every other process sends
    its rows there.
    """

    def __init__(self, writer: ClickHouseWriter, *, local: bool = True) -> None:
        self._writer = writer
        self._local = local

    def list_parts(self) -> list[str]:
        return ["clickhouse"] if self._local else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WriterPartition:
        return _WriterPartition(self._writer)

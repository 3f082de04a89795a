"""Batches are the unit that flows between dataflow steps.

Bytewax pays a fixed cost per item crossing a step; moving a few thousand
messages per item makes that cost vanish, so every step works on batches that
come from exactly one source partition (a file or a Kafka partition).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from koxpulse.events import AnyEvent


@dataclass(slots=True)
class RawBatch:
    """Undecoded messages read from one source partition, in read order."""

    partition: str  # stable id of the source partition: a file path, or "topic:partition"
    source: str  # what dead letters name as their source: the file or the topic
    position_prefix: str  # "" for files (position = line), "P:" for Kafka (position = P:offset)
    positions: list[int]
    messages: list[bytes]
    received_at_ms: int
    eof: bool = False
    idle: bool = False  # the partition has had no message for a while: do not wait for it

    def position(self, i: int) -> str:
        return f"{self.position_prefix}{self.positions[i]}"


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """One invalid message: where it came from and why it was refused."""

    received_at_ms: int
    source: str
    position: str
    reason: str
    code: str  # bounded label for metrics, e.g. "missing_field"
    raw: bytes


@dataclass(slots=True)
class DecodedBatch:
    """The valid events of a raw batch, with their epoch-ms times, positions and lateness."""

    partition: str
    source: str
    position_prefix: str
    received_at_ms: int
    events: list[AnyEvent]
    ts: npt.NDArray[np.int64]  # epoch ms, one per event
    positions: list[int]
    messages: int
    eof: bool = False
    dead: list[DeadLetter] = field(default_factory=list)
    idle: bool = False
    # Filled by the lateness step: indexes (into events) of late events, and the
    # partition's watermark (newest event time read minus the allowed lateness).
    late: list[int] = field(default_factory=list)
    watermark: int | None = None


@dataclass(slots=True, frozen=True)
class LateEvent:
    """A valid event that came after its window could still take it."""

    received_at_ms: int
    ts: int
    type: str
    region: str
    channel: str
    event_id: str
    source: str
    position: str

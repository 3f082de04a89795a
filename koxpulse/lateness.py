"""Lateness per source partition (contract §1).

An event is late when its time is more than the allowed lateness behind the
newest event time already read from the same partition. Judging per partition
means a slow or idle partition never makes another partition's events late.
"""

from __future__ import annotations

from dataclasses import dataclass

from koxpulse.batches import DecodedBatch


@dataclass(slots=True)
class PartitionClock:
    """Newest event time read from one partition; the state of the lateness step."""

    allowed_lateness_ms: int
    newest: int | None = None

    def tag(self, batch: DecodedBatch) -> DecodedBatch:
        """Mark late events in ``batch`` and stamp it with this partition's watermark."""
        newest = self.newest
        lateness = self.allowed_lateness_ms
        late = batch.late
        for i, t in enumerate(batch.ts):
            if newest is None or t > newest:
                newest = t
            elif t < newest - lateness:
                late.append(i)
        self.newest = newest
        batch.watermark = None if newest is None else newest - lateness
        return batch

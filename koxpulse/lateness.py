"""Lateness per source partition (contract §1).

An event is late when its time is more than the allowed lateness behind the
newest event time already read from the same partition. Judging per partition
means a slow or idle partition never makes another partition's events late.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koxpulse.batches import DecodedBatch


@dataclass(slots=True)
class PartitionClock:
    """Newest event time read from one partition; the state of the lateness step."""

    allowed_lateness_ms: int
    newest: int | None = None

    def tag(self, batch: DecodedBatch) -> DecodedBatch:
        """Mark late events in ``batch`` and stamp it with this partition's watermark.

        Vectorised: the newest time before each event is a running maximum.
        """
        ts = batch.ts
        if len(ts):
            running = np.maximum.accumulate(ts)
            before = np.empty_like(ts)
            first = int(ts[0]) if self.newest is None else self.newest
            before[0] = first
            np.maximum(running[:-1], first, out=before[1:])
            late = np.flatnonzero(ts < before - self.allowed_lateness_ms)
            if len(late):
                batch.late.extend(late.tolist())
            self.newest = max(first, int(running[-1]))
        batch.watermark = None if self.newest is None else self.newest - self.allowed_lateness_ms
        return batch

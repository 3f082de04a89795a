"""Garbage collection for a long-running stream: no automatic full passes.

CPython's cyclic collector runs a full (oldest-generation) pass whenever the objects
that survived the younger passes have grown by a quarter. With the state a live run
holds (dedup ids, open minutes, pending events, detector state: millions of
references) each such pass stops the dataflow thread for 0.3-1 s, several times a
minute while the state grows: measured at 26k events/s, about a tenth of the wall
time, and most of the event-to-alert p99. Reference counting frees nearly everything
koxpulse drops, and the young generations still catch short-lived cycles; so during a
run the objects made at start-up are frozen (never scanned again), automatic full
passes are off, and a full collection runs every ``interval`` seconds instead, to
reclaim whatever cycles reach the old generation. The youngest generation is collected
every 20,000 allocations instead of 700: a batch allocates tens of thousands of small
tuples and lists, nearly all freed by reference counting, so the frequent young passes
mostly re-scanned survivors (replay, detectors off: dataflow-thread CPU 8.33 -> 7.62 us
per event, medians of 3 alternated runs).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_NEVER = 2**31 - 1  # a full-pass threshold no run reaches
_YOUNG = 20_000  # allocations between young-generation passes (Python's default: 700)


@contextlib.contextmanager
def full_collections_every(interval: float) -> Iterator[None]:
    """Within the block: full collections every ``interval`` s only (0: Python's default)."""
    if interval <= 0:
        yield
        return
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(before[0], _YOUNG), before[1], _NEVER)
    stop = threading.Event()

    def collect() -> None:
        while not stop.wait(interval):
            gc.collect()

    thread = threading.Thread(target=collect, name="koxpulse-gc", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        gc.set_threshold(*before)
        gc.unfreeze()

"""During a run Python makes no automatic full collection; one runs on a timer instead."""

from __future__ import annotations

import gc
import time
from typing import Any

from koxpulse.gcpolicy import full_collections_every


def test_full_collections_run_on_the_timer_only_and_the_defaults_come_back() -> None:
    before = gc.get_threshold()
    full: list[float] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(time.monotonic())

    with full_collections_every(0.05):
        # young passes every 20,000 allocations at least; the middle generation as before
        assert gc.get_threshold()[:2] == (max(before[0], 20_000), before[1])
        assert gc.get_threshold()[2] > 10**9  # no automatic full pass
        assert gc.get_freeze_count() > 0  # start-up objects are never scanned again
        gc.callbacks.append(seen)
        try:
            deadline = time.monotonic() + 5
            while len(full) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            gc.callbacks.remove(seen)
    assert len(full) >= 2
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_zero_leaves_python_alone() -> None:
    before = gc.get_threshold()
    with full_collections_every(0):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0

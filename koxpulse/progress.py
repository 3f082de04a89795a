"""A one-line progress display for interactive replays; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from koxpulse.metrics import Metrics


class Progress:
    """Redraws lines read, events/s, dead letters and late events twice a second."""

    def __init__(
        self, metrics: Metrics, stream: TextIO | None = None, interval: float = 0.5
    ) -> None:
        self._metrics = metrics
        self._stream = stream or sys.stderr
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="koxpulse-progress", daemon=True)
        self._start = time.monotonic()

    @staticmethod
    def wanted(mode: str, stream: TextIO | None = None) -> bool:
        if mode == "on":
            return True
        if mode == "off":
            return False
        s = stream or sys.stderr
        return bool(getattr(s, "isatty", lambda: False)())

    def line(self) -> str:
        m = self._metrics
        lines = m.total("koxpulse_messages_read_total")
        elapsed = max(time.monotonic() - self._start, 1e-9)
        return (
            f"\rread {lines:,.0f} lines · {lines / elapsed:,.0f}/s · "
            f"dead letters {m.total('koxpulse_dead_letters_total'):,.0f} · "
            f"late {m.value('koxpulse_late_events_total'):,.0f} · "
            f"kpi rows {m.value('koxpulse_kpi_rows_total'):,.0f}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._stream.write(self.line())
            self._stream.flush()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._stream.write(self.line() + "\n")
        self._stream.flush()

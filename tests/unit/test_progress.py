"""The replay progress line: on a TTY only, with the figures a person watches."""

from __future__ import annotations

import io

from koxpulse.metrics import Metrics
from koxpulse.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_shows_lines_dead_letters_and_late() -> None:
    m = Metrics()
    m.messages.labels(source="file").inc(1500)
    m.dead_letters.labels(reason="not_json").inc(3)
    m.late_events.inc(2)
    m.kpi_rows.inc(7)
    out = FakeTTY()
    with Progress(m, stream=out, interval=0.01):
        pass
    line = out.getvalue().splitlines()[-1]
    assert "read 1,500 lines" in line
    assert "dead letters 3" in line and "late 2" in line and "kpi rows 7" in line


def test_progress_is_only_wanted_on_a_tty_in_auto_mode() -> None:
    assert Progress.wanted("auto", FakeTTY()) is True
    assert Progress.wanted("auto", io.StringIO()) is False
    assert Progress.wanted("on", io.StringIO()) is True
    assert Progress.wanted("off", FakeTTY()) is False

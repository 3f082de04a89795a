"""Replay of ``.jsonl`` / ``.jsonl.gz`` files: one Bytewax source partition per file.

A partition reads whole lines in batches and remembers the byte offset after
the last line it handed out, so a resumed run continues at the next line.
Lines are read with a size cap, so one enormous line cannot exhaust memory: it
is kept only up to the cap and still becomes exactly one dead letter.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Sequence
from typing import IO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from koxpulse.batches import RawBatch
from koxpulse.errors import ConfigError, SourceError
from koxpulse.events import MAX_MESSAGE_BYTES

# Keep this much of an oversized line: enough to report it, bounded whatever the input.
LINE_KEEP_BYTES = 4 * MAX_MESSAGE_BYTES

FileState = tuple[int, int]  # (byte offset after the last emitted line, next line number)


def open_lines(path: str) -> IO[bytes]:
    """Open a plain or gzip-compressed JSON-lines file for binary reading."""
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb", buffering=1 << 20)
    except OSError as exc:
        raise SourceError(f"cannot open input file {path}: {exc.strerror or exc}") from exc


def check_inputs(paths: Sequence[str]) -> list[str]:
    """Refuse missing or unreadable inputs before the dataflow starts (exit code 2)."""
    if not paths:
        raise ConfigError("no input: give --input PATH (one or more .jsonl or .jsonl.gz files)")
    out = []
    for p in paths:
        if not os.path.isfile(p):
            raise ConfigError(f"input file {p} does not exist or is not a regular file")
        if not os.access(p, os.R_OK):
            raise ConfigError(f"input file {p} is not readable")
        out.append(os.path.abspath(p))
    if len(set(out)) != len(out):
        raise ConfigError("the same input file is given twice")
    return out


class FilePartition(StatefulSourcePartition[RawBatch, FileState]):
    """Reads one file in batches of whole lines."""

    def __init__(
        self,
        path: str,
        batch_lines: int,
        resume: FileState | None,
        clock_ms: Callable[[], int],
    ) -> None:
        self._path = path
        self._batch_lines = batch_lines
        self._clock_ms = clock_ms
        self._f = open_lines(path)
        self._offset, self._line = resume if resume is not None else (0, 1)
        if self._offset:
            try:
                self._f.seek(self._offset)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise SourceError(f"cannot resume {path} at byte {self._offset}: {exc}") from exc
        self._done = False

    def next_batch(self) -> list[RawBatch]:
        if self._done:
            raise StopIteration
        readline = self._f.readline
        limit = LINE_KEEP_BYTES + 1
        messages: list[bytes] = []
        first = self._line
        consumed = 0
        try:
            for _ in range(self._batch_lines):
                line = readline(limit)
                if not line:
                    self._done = True
                    break
                consumed += len(line)
                if line[-1:] == b"\n":
                    line = line[:-1]
                elif len(line) == limit:
                    line, extra = line[:LINE_KEEP_BYTES], self._skip_rest_of_line()
                    consumed += extra
                messages.append(line)
        except (OSError, EOFError, gzip.BadGzipFile, io.UnsupportedOperation) as exc:
            raise SourceError(
                f"cannot read {self._path} near line {self._line + len(messages)}: {exc}"
            ) from exc
        self._offset += consumed
        self._line += len(messages)
        return [
            RawBatch(
                partition=self._path,
                source=self._path,
                position_prefix="",
                positions=list(range(first, first + len(messages))),
                messages=messages,
                received_at_ms=self._clock_ms(),
                eof=self._done,
            )
        ]

    def _skip_rest_of_line(self) -> int:
        skipped = 0
        while True:
            chunk = self._f.readline(1 << 20)
            skipped += len(chunk)
            if not chunk or chunk[-1:] == b"\n":
                return skipped

    def snapshot(self) -> FileState:
        return (self._offset, self._line)

    def close(self) -> None:
        self._f.close()


class FileSource(FixedPartitionedSource[RawBatch, FileState]):
    """One partition per input file; lateness is judged per file (contract §1)."""

    def __init__(
        self, paths: Sequence[str], *, batch_lines: int, clock_ms: Callable[[], int]
    ) -> None:
        self.paths = list(paths)
        self.batch_lines = batch_lines
        self.clock_ms = clock_ms

    def list_parts(self) -> list[str]:
        return self.paths

    def build_part(
        self, step_id: str, for_part: str, resume_state: FileState | None
    ) -> FilePartition:
        return FilePartition(for_part, self.batch_lines, resume_state, self.clock_ms)

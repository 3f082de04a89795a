"""File replay: whole lines, gzip, bounded memory for huge lines, resume where it stopped."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koxpulse.errors import ConfigError
from koxpulse.events import MAX_MESSAGE_BYTES
from koxpulse.sources.files import LINE_KEEP_BYTES, FilePartition, check_inputs


def read_all(path: Path, batch_lines: int = 3, resume: tuple[int, int] | None = None):
    part = FilePartition(str(path), batch_lines, resume, lambda: 0)
    batches = []
    try:
        while True:
            batches += part.next_batch()
    except StopIteration:
        pass
    finally:
        part.close()
    return batches


def test_lines_positions_and_eof(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\n\nfour\r\nfive")  # empty line kept; no trailing newline
    batches = read_all(p)
    msgs = [m for b in batches for m in b.messages]
    assert msgs == [b"one", b"two", b"", b"four\r", b"five"]
    assert [pos for b in batches for pos in b.positions] == [1, 2, 3, 4, 5]
    assert [b.eof for b in batches] == [False, True]
    assert batches[0].position(1) == "2"


def test_exact_multiple_of_batch_ends_with_an_empty_eof_batch(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"1\n2\n3\n")
    batches = read_all(p)
    assert [len(b.messages) for b in batches] == [3, 0]
    assert batches[-1].eof


def test_gzip_input(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"a\nb\n")
    assert [m for b in read_all(p) for m in b.messages] == [b"a", b"b"]


def test_huge_line_is_kept_only_up_to_the_cap(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"x" * (LINE_KEEP_BYTES * 3) + b"\nafter\n")
    msgs = [m for b in read_all(p) for m in b.messages]
    assert len(msgs) == 2
    assert len(msgs[0]) == LINE_KEEP_BYTES > MAX_MESSAGE_BYTES
    assert msgs[1] == b"after"


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"])
def test_resume_from_a_snapshot_continues_at_the_next_line(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    data = b"".join(f"line{i}\n".encode() for i in range(10))
    if name.endswith(".gz"):
        with gzip.open(p, "wb") as f:
            f.write(data)
    else:
        p.write_bytes(data)
    part = FilePartition(str(p), 4, None, lambda: 0)
    first = part.next_batch()[0]
    state = part.snapshot()
    part.close()
    rest = read_all(p, 4, resume=state)
    assert first.messages == [b"line0", b"line1", b"line2", b"line3"]
    assert [m for b in rest for m in b.messages] == [f"line{i}".encode() for i in range(4, 10)]
    assert rest[0].positions[0] == 5


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(ConfigError, match="no input"):
        check_inputs([])


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    trailing_newline=st.booleans(),
    block=st.integers(1, 64),
    batch=st.integers(1, 7),
    cap=st.integers(5, 50),
)
def test_block_reader_matches_line_semantics_and_resumes(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    trailing_newline: bool,
    block: int,
    batch: int,
    cap: int,
) -> None:
    import koxpulse.sources.files as files

    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    p = tmp_path_factory.mktemp("blk") / "a.jsonl"
    p.write_bytes(data)
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    expected = [line[:cap] for line in expected]
    old_block, old_cap = FilePartition.BLOCK, files.LINE_KEEP_BYTES
    FilePartition.BLOCK, files.LINE_KEEP_BYTES = block, cap
    try:
        got = [m for b in read_all(p, batch) for m in b.messages]
        assert got == expected
        # stop after the first batch, resume from the snapshot: the rest follows exactly
        part = FilePartition(str(p), batch, None, lambda: 0)
        first = part.next_batch()[0].messages
        state = part.snapshot()
        part.close()
        done = len(first) == len(expected)
        rest = [] if done else [m for b in read_all(p, batch, resume=state) for m in b.messages]
        assert first + rest == expected
        assert state[1] == 1 + len(first)
    finally:
        FilePartition.BLOCK, files.LINE_KEEP_BYTES = old_block, old_cap

"""File layout: the event stream and its companion files, written reproducibly.

Gzip output sets mtime=0 and no file name in the header, so the same seed gives the
same bytes whatever the output path or the time of day.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import msgspec
import orjson

GZIP_LEVEL = 3


@dataclass(frozen=True)
class CompanionPaths:
    truth: Path
    labels: Path
    expected: Path


def companion_paths(out: Path) -> CompanionPaths:
    out = Path(out)
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix) and len(name) > len(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        raise ValueError(f"output file name must end with .jsonl or .jsonl.gz: {out}")
    d = out.parent
    return CompanionPaths(
        truth=d / f"{stem}.truth.jsonl",
        labels=d / f"{stem}.labels.jsonl",
        expected=d / f"{stem}.expected.json",
    )


@contextmanager
def open_stream(out: Path) -> Iterator[IO[bytes]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw:
        if out.name.endswith(".gz"):
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL
            ) as gz:
                yield cast(IO[bytes], gz)
        else:
            yield raw


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        enc = msgspec.json.Encoder().encode
        buf: list[bytes] = []
        for row in rows:
            buf.append(enc(row))
            if len(buf) >= 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")

"""Batched, idempotent writes to ClickHouse, embedded (chDB) or a server, with one code path.

clickhouse-connect gives the same client API for ``chdb:///dir`` and
``http(s)://`` DSNs, so the only difference between embedded and server use is
the DSN. Rows are buffered per table and written in batches by size and age;
every table replaces rows by version, which makes re-writing a batch harmless.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import pyarrow as pa
import pyarrow.ipc
from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, SinkError
from koxpulse.metrics import Metrics
from sinks.tables import (
    EVENTS_INTAKE,
    EVENTS_INTAKE_COLUMNS,
    TABLES,
    events_intake_sql,
    quote_ident,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where to write: parsed from a DSN, printable without its password."""

    dsn: str
    database: str
    embedded_path: str | None = None
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    secure: bool = False
    ca_file: str | None = None

    @property
    def redacted(self) -> str:
        if self.embedded_path is not None:
            return f"chdb://{self.embedded_path}"
        user = f"{self.username}:***@" if self.password else f"{self.username}@"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{user}{self.host}:{self.port}/{self.database}"

    @classmethod
    def parse(
        cls, dsn: str, database: str = "koxpulse", ca_file: str | None = None
    ) -> ClickHouseTarget:
        """Parse ``chdb:///dir`` or ``http(s)://user:password@host:port/database``."""
        if dsn.startswith("chdb:"):
            path = dsn[len("chdb:") :]
            if path.startswith("//"):
                path = path[2:]
            if not path:
                raise ConfigError(
                    "ClickHouse DSN chdb: needs a directory, e.g. chdb:///var/lib/koxpulse"
                )
            return cls(dsn=dsn, database=database, embedded_path=os.path.abspath(path))
        parts = urlsplit(dsn)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "ClickHouse DSN must be chdb:///path or http(s)://user:password@host:port/database"
            )
        db = parts.path.strip("/") or database
        try:
            port = parts.port or (8443 if parts.scheme == "https" else 8123)
        except ValueError as exc:
            raise ConfigError(f"ClickHouse DSN has an invalid port: {exc}") from exc
        return cls(
            dsn=dsn,
            database=db,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=parts.scheme == "https",
            ca_file=ca_file,
        )


def connect(target: ClickHouseTarget) -> Client:
    """Open a client; failures name the redacted DSN and the cause."""
    try:
        if target.embedded_path is not None:
            os.makedirs(target.embedded_path, exist_ok=True)
            return clickhouse_connect.get_client(dsn=f"chdb://{target.embedded_path}")
        kwargs: dict[str, Any] = {
            "host": target.host,
            "port": target.port,
            "username": target.username,
            "password": target.password,
            "secure": target.secure,
            "verify": True,
        }
        if target.ca_file:
            kwargs["ca_cert"] = target.ca_file
        return clickhouse_connect.get_client(**kwargs)
    except Exception as exc:
        detail = str(exc).replace(target.password, "***") if target.password else str(exc)
        first = detail.splitlines()[0] if detail else exc.__class__.__name__
        raise SinkError(f"cannot connect to ClickHouse at {target.redacted}: {first}") from exc


def ensure_schema(client: Client, database: str) -> None:
    """Create the database, every contract table and the experiment views (idempotent)."""
    from koxpulse.experiments.views import create_view_statements

    client.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
    for table in TABLES.values():
        client.command(table.create_sql(database))
    for statement in events_intake_sql(database):
        client.command(statement)
    for statement in create_view_statements(database):
        client.command(statement)


@dataclass(frozen=True, slots=True)
class EventLines:
    """Accepted events for the ``events`` table as JSON lines ``[ts_ms, event, version]``,
    written through the events intake (see :func:`sinks.tables.events_intake_sql`)."""

    lines: bytes
    count: int


# How ClickHouse reads the intake's JSON: floats exactly (the default parser may be off by
# an ulp), an event's object as the named tuple, absent fields NULL, other fields ignored.
INTAKE_INSERT_SETTINGS: dict[str, Any] = {
    "precise_float_parsing": 1,
    "input_format_json_named_tuples_as_objects": 1,
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 1,
    "input_format_json_ignore_unknown_keys_in_named_tuple": 1,
    "optimize_on_insert": 0,
}


@dataclass(slots=True)
class _Buffers:
    rows: dict[str, list[Sequence[Any]]]
    arrow: dict[str, list[pa.Table]]
    lines: list[EventLines] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a failing write is retried.

    While a write is retried the dataflow waits for it: nothing more is read, so
    memory stays bounded (back-pressure) and no row is dropped. ``max_total_s = 0``
    retries until ClickHouse takes the rows again.
    """

    max_total_s: float = 0.0
    initial_s: float = 0.5
    max_backoff_s: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.initial_s * 2**attempt)
        return base * (1 + self.jitter * rng.uniform(-1, 1))


class ClickHouseWriter:
    """Buffers rows per table and inserts them in batches by size and age.

    ``flush`` must run before a recovery snapshot is committed, so that a
    snapshot never covers rows that only lived in this buffer. A failing insert is
    retried with exponential backoff and jitter (see :class:`RetryPolicy`); every
    failure is logged and counted in ``metrics`` (``sink_errors``, ``sink_up``).

    With ``background=True`` full buffers are written by a thread of their own: the
    engine and Arrow release the GIL while they work, so inserts overlap with the
    dataflow instead of stopping it. At most ``max_pending`` buffers wait for that
    thread; past that ``add`` waits (back-pressure), and ``flush`` waits until every
    handed-over buffer is written, so snapshots keep their guarantee.
    """

    def __init__(
        self,
        target: ClickHouseTarget,
        *,
        batch_rows: int = 50_000,
        flush_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        client: Client | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        background: bool = False,
        max_pending: int = 2,
    ) -> None:
        self.target = target
        self._metrics = metrics
        self._background = background
        self._pending: queue.Queue[_Buffers | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random(0)
        self.failures = 0
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._client = client
        self._owns_client = client is None  # a client given by the caller stays open
        self._buffers: dict[str, list[Sequence[Any]]] = {}
        self._arrow: dict[str, list[pa.Table]] = {}
        self._lines: list[EventLines] = []
        self._buffered = 0
        self._oldest: float | None = None
        self.rows_written: dict[str, int] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.target)
            self._owns_client = True
            ensure_schema(self._client, self.target.database)
        return self._client

    def add(self, table: str, rows: Sequence[Sequence[Any]] | pa.Table | EventLines) -> None:
        """Buffer rows (tuples in the table's column order, an Arrow table, or for the
        events table :class:`EventLines`)."""
        if isinstance(rows, EventLines):
            if table != "events":
                raise ValueError(f"EventLines are rows of the events table, not of {table}")
            if not rows.count:
                return
            self._lines.append(rows)
            self._buffered += rows.count
        elif isinstance(rows, pa.Table):
            if not rows.num_rows:
                return
            self._arrow.setdefault(table, []).append(rows)
            self._buffered += rows.num_rows
        elif not rows:
            return
        else:
            self._buffers.setdefault(table, []).extend(rows)
            self._buffered += len(rows)
        if self._oldest is None:
            self._oldest = self._clock()
        if (
            self._buffered >= self.batch_rows
            or self._clock() - self._oldest >= self.flush_interval_s
        ):
            self._hand_over()

    def flush(self) -> None:
        """Write everything buffered and wait until it is written."""
        self._hand_over()
        if self._background:
            self._pending.join()
            self._raise_if_failed()

    def _hand_over(self) -> None:
        work = _Buffers(self._buffers, self._arrow, self._lines)
        self._buffers, self._arrow, self._lines = {}, {}, []
        self._buffered = 0
        self._oldest = None
        if not self._background:
            try:
                self._write(work)
            except BaseException:
                self._keep(work)  # what failed stays buffered for the next flush
                raise
            return
        self._raise_if_failed()
        if not work.rows and not work.arrow and not work.lines:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="koxpulse-clickhouse-writer", daemon=True
            )
            self._thread.start()
        self._pending.put(work)  # waits while max_pending buffers are not written yet

    def _keep(self, work: _Buffers) -> None:
        for table, rows in work.rows.items():
            self._buffers.setdefault(table, [])[:0] = rows
            self._buffered += len(rows)
        for table, parts in work.arrow.items():
            self._arrow.setdefault(table, [])[:0] = parts
            self._buffered += sum(p.num_rows for p in parts)
        self._lines[:0] = work.lines
        self._buffered += sum(p.count for p in work.lines)

    def _run(self) -> None:
        while True:
            work = self._pending.get()
            try:
                if work is None:
                    return
                if self._failed is None:
                    self._write(work)
            except BaseException as exc:  # reported to the dataflow at its next add/flush
                self._failed = exc
            finally:
                self._pending.task_done()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def _write(self, work: _Buffers) -> None:
        """Write one set of buffers; a table leaves it only once written, so a write that
        gives up can be retried later without losing rows (re-written ones replace)."""
        for table in list(work.rows):
            rows = work.rows[table]
            if rows:
                names = list(TABLES[table].column_names)
                self._insert(table, len(rows), partial(_insert_rows, rows=rows, names=names))
            del work.rows[table]
        for table in list(work.arrow):
            parts = work.arrow[table]
            block = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            self._insert(table, block.num_rows, partial(_insert_arrow, block=block))
            del work.arrow[table]
        if work.lines:
            data = b"".join(p.lines for p in work.lines)
            n = sum(p.count for p in work.lines)
            self._insert("events", n, partial(_insert_event_lines, data=data))
            work.lines.clear()

    def _insert(self, table: str, n: int, do: Callable[..., object]) -> None:
        """One insert, retried until it succeeds or the retry policy gives up."""
        attempt = 0
        started = self._clock()
        while True:
            began = time.perf_counter()
            try:
                do(self.client, f"{quote_ident(self.target.database)}.{quote_ident(table)}")
                if self._metrics is not None:
                    self._metrics.sink_write.labels("clickhouse", table).observe(
                        time.perf_counter() - began
                    )
                break
            except Exception as exc:
                error = _sink_error(exc, n, table, self.target)
                self.failures += 1
                if self._metrics is not None:
                    self._metrics.sink_errors.labels("clickhouse", table).inc()
                    self._metrics.sink_up.set(0)
                waited = self._clock() - started
                if self.retry.max_total_s and waited >= self.retry.max_total_s:
                    raise error from exc
                delay = self.retry.delay(attempt, self._rng)
                log.warning("%s; retry %d in %.1f s", error, attempt + 1, delay)
                if self.target.embedded_path is None and self._client is not None:
                    # a server may have restarted: start over with a fresh connection
                    with contextlib.suppress(Exception):
                        self._client.close()
                    self._client = None
                self._sleep(delay)
                attempt += 1
        if attempt:
            log.warning("ClickHouse at %s takes writes again", self.target.redacted)
            if self._metrics is not None:
                self._metrics.sink_up.set(1)
        self.rows_written[table] = self.rows_written.get(table, 0) + n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._pending.put(None)
                self._thread.join(timeout=60)
                self._thread = None
            if self._client is not None and self._owns_client:
                self._client.close()
                self._client = None


def _sink_error(exc: BaseException, n: int, table: str, target: ClickHouseTarget) -> SinkError:
    if isinstance(exc, SinkError):  # e.g. the reconnect failed: already names the DSN
        return exc
    first = str(exc).splitlines()[0] if str(exc) else repr(exc)
    if target.password:
        first = first.replace(target.password, "***")
    return SinkError(
        f"ClickHouse insert of {n} rows into {table} at {target.redacted} failed: {first}"
    )


# Arrow blocks carry the events table, which every reader reads with FINAL and whose rows
# are deduplicated events: replacing rows inside each inserted block (the engine's default)
# finds next to nothing to replace there, yet doubled the insert's work (chDB, 50k rows:
# 1.5 vs 2.9 us per row). FINAL gives the same answer either way.
ARROW_INSERT_SETTINGS: dict[str, Any] = {"optimize_on_insert": 0}


def _insert_rows(
    client: Client, to: str, *, rows: Sequence[Sequence[Any]], names: list[str]
) -> None:
    client.insert(to, rows, column_names=names)


def _insert_arrow(client: Client, to: str, *, block: pa.Table) -> None:
    data = _arrow_stream(block)
    client.raw_insert(
        to,
        list(block.column_names),
        insert_block=data,
        fmt="ArrowStream",
        settings=ARROW_INSERT_SETTINGS,
    )


def _insert_event_lines(client: Client, to: str, *, data: bytes) -> None:
    # ``to`` names the events table; the rows go through its intake
    intake = to.rpartition(".")[0] + "." + quote_ident(EVENTS_INTAKE)
    client.raw_insert(
        intake,
        list(EVENTS_INTAKE_COLUMNS),
        insert_block=data,
        fmt="JSONCompactEachRow",
        settings=INTAKE_INSERT_SETTINGS,
    )


def _arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()

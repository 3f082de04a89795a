"""Batched, idempotent writes to ClickHouse, embedded (chDB) or a server, with one code path.

clickhouse-connect gives the same client API for ``chdb:///dir`` and
``http(s)://`` DSNs, so the only difference between embedded and server use is
the DSN. Rows are buffered per table and written in batches by size and age;
every table replaces rows by version, which makes re-writing a batch harmless.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, SinkError
from koxpulse.metrics import Metrics
from sinks.tables import TABLES, quote_ident

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
    """Create the database and every contract table if absent (idempotent)."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
    for table in TABLES.values():
        client.command(table.create_sql(database))


class ClickHouseWriter:
    """Buffers rows per table and inserts them in batches by size and age.

    ``flush`` must run before a recovery snapshot is committed, so that a
    snapshot never covers rows that only lived in this buffer.
    """

    def __init__(
        self,
        target: ClickHouseTarget,
        *,
        batch_rows: int = 50_000,
        flush_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        client: Client | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.target = target
        self._metrics = metrics
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._client = client
        self._buffers: dict[str, list[Sequence[Any]]] = {}
        self._buffered = 0
        self._oldest: float | None = None
        self.rows_written: dict[str, int] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.target)
            ensure_schema(self._client, self.target.database)
        return self._client

    def add(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        self._buffers.setdefault(table, []).extend(rows)
        self._buffered += len(rows)
        if self._oldest is None:
            self._oldest = self._clock()
        if (
            self._buffered >= self.batch_rows
            or self._clock() - self._oldest >= self.flush_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        client = self.client
        for table, rows in self._buffers.items():
            if not rows:
                continue
            spec = TABLES[table]
            started = time.perf_counter()
            try:
                client.insert(
                    f"{quote_ident(self.target.database)}.{quote_ident(table)}",
                    rows,
                    column_names=list(spec.column_names),
                )
            except Exception as exc:
                if self._metrics is not None:
                    self._metrics.sink_errors.labels("clickhouse", table).inc()
                first = str(exc).splitlines()[0] if str(exc) else repr(exc)
                raise SinkError(
                    f"ClickHouse insert of {len(rows)} rows into {table} at "
                    f"{self.target.redacted} failed: {first}"
                ) from exc
            if self._metrics is not None:
                self._metrics.sink_write.labels("clickhouse", table).observe(
                    time.perf_counter() - started
                )
            self.rows_written[table] = self.rows_written.get(table, 0) + len(rows)
        self._buffers.clear()
        self._buffered = 0
        self._oldest = None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

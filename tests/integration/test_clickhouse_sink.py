"""The ClickHouse writer against real embedded ClickHouse (chDB): schema, batching, replacement."""

from __future__ import annotations

from pathlib import Path

from koxpulse.experiments.views import VIEW_NAMES
from sinks.clickhouse import ClickHouseTarget, ClickHouseWriter, ensure_schema
from sinks.tables import EVENTS_INTAKE, EVENTS_INTAKE_VIEW, TABLES, quote_ident

T0 = 1_795_305_600_000


def kpi(version: int, scans: int) -> tuple:
    return (T0, "CN-SD", "offline", scans, scans, 1, 0, 0, 0.0, 0, 0, 0.0, None, version)


def writer(chdb_dir: Path, client: object, database: str, **kw: object) -> ClickHouseWriter:
    target = ClickHouseTarget.parse(f"chdb://{chdb_dir}", database)
    return ClickHouseWriter(target, client=client, **kw)  # type: ignore[arg-type]


def test_schema_is_created_idempotently_with_every_contract_table(chdb_client, database) -> None:
    ensure_schema(chdb_client, database)
    ensure_schema(chdb_client, database)
    engines = dict(
        chdb_client.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String}",
            parameters={"db": database},
        ).result_rows
    )
    assert set(engines) == set(TABLES) | set(VIEW_NAMES) | {EVENTS_INTAKE, EVENTS_INTAKE_VIEW}
    # experiment readouts are plain views over FINAL: exact under re-inserted rows
    assert {engines[v] for v in VIEW_NAMES} == {"View"}
    # the events intake stores nothing; its view moves the rows into events
    assert (engines[EVENTS_INTAKE], engines[EVENTS_INTAKE_VIEW]) == ("Null", "MaterializedView")
    cols = [
        r[0]
        for r in chdb_client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'kpi_minute' "
            "ORDER BY position",
            parameters={"db": database},
        ).result_rows
    ]
    assert cols[:13] == [
        "window_start",
        "region",
        "channel",
        "scans",
        "unique_codes",
        "scanners",
        "redemptions",
        "orders",
        "revenue",
        "buyers",
        "repeat_buyers",
        "redemption_rate",
        "repurchase_rate",
    ]


def test_rewritten_rows_replace_older_versions_under_final(chdb_dir, chdb_client, database) -> None:
    w = writer(chdb_dir, chdb_client, database, batch_rows=10_000, flush_interval_s=3600)
    ensure_schema(chdb_client, database)
    w.add("kpi_minute", [kpi(1, 5)])
    w.flush()
    w.add("kpi_minute", [kpi(3, 7), kpi(2, 6)])
    w.flush()
    rows = chdb_client.query(
        f"SELECT scans, version FROM {quote_ident(database)}.kpi_minute FINAL"
    ).result_rows
    assert rows == [(7, 3)]


def test_batches_flush_by_size_and_by_age(chdb_dir, chdb_client, database) -> None:
    now = [0.0]
    w = writer(
        chdb_dir, chdb_client, database, batch_rows=3, flush_interval_s=5.0, clock=lambda: now[0]
    )
    ensure_schema(chdb_client, database)
    count = f"SELECT count() FROM {quote_ident(database)}.dead_letters"
    row = (T0, "f", "1", "why", "not_json", b"x", 1)
    w.add("dead_letters", [row])
    assert chdb_client.query(count).result_rows == [(0,)]
    w.add("dead_letters", [(T0, "f", "2", "why", "not_json", b"y", 1)] * 1)
    now[0] = 6.0
    w.add("dead_letters", [(T0, "f", "3", "why", "not_json", b"z", 1)])
    assert chdb_client.query(count).result_rows == [(3,)]  # aged out
    w.add("dead_letters", [(T0, "f", str(i), "why", "c", b"", 1) for i in range(10, 13)])
    assert chdb_client.query(count).result_rows == [(6,)]  # size reached
    assert w.rows_written == {"dead_letters": 6}


def test_identifiers_are_quoted(chdb_client) -> None:
    odd = "odd`name; DROP"
    ensure_schema(chdb_client, odd)
    assert chdb_client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String}", parameters={"db": odd}
    ).result_rows == [(len(TABLES) + len(VIEW_NAMES) + 2,)]
    assert quote_ident("a`b") == "`a\\`b`"


def test_dsn_parsing_and_redaction() -> None:
    t = ClickHouseTarget.parse("https://bob:p%40ss@ch.example:9440/sales", "koxpulse")
    assert (t.host, t.port, t.username, t.password, t.secure, t.database) == (
        "ch.example",
        9440,
        "bob",
        "p@ss",
        True,
        "sales",
    )
    assert t.redacted == "https://bob:***@ch.example:9440/sales"
    t = ClickHouseTarget.parse("http://ch:8123", "koxpulse")
    assert t.database == "koxpulse" and t.password == "" and "***" not in t.redacted
    t = ClickHouseTarget.parse("chdb://./data/x", "db")
    assert t.embedded_path is not None and t.embedded_path.endswith("/data/x")


def test_background_writes_are_all_durable_after_flush(chdb_dir, chdb_client, database) -> None:
    ensure_schema(chdb_client, database)
    w = writer(chdb_dir, chdb_client, database, batch_rows=3, background=True, max_pending=1)
    for i in range(20):
        w.add("dead_letters", [(T0, "f", str(i), "why", "not_json", b"x", 1)])
    w.flush()
    count = f"SELECT count() FROM {quote_ident(database)}.dead_letters"
    assert chdb_client.query(count).result_rows == [(20,)]
    w.close()


def test_a_background_write_that_gives_up_fails_the_next_call(
    chdb_dir, chdb_client, database
) -> None:
    from sinks.clickhouse import RetryPolicy

    ensure_schema(chdb_client, database)
    table = f"{quote_ident(database)}.dead_letters"
    chdb_client.command(f"ALTER TABLE {table} ADD CONSTRAINT refuse CHECK 0")
    w = writer(
        chdb_dir,
        chdb_client,
        database,
        batch_rows=1,
        background=True,
        retry=RetryPolicy(max_total_s=0.3, initial_s=0.05),
    )
    w.add("dead_letters", [(T0, "f", "1", "why", "not_json", b"x", 1)])
    try:
        w.flush()
    except Exception as exc:
        assert "Constraint" in str(exc) and "dead_letters" in str(exc)
    else:
        raise AssertionError("the refused write was not reported")
    finally:
        chdb_client.command(f"ALTER TABLE {table} DROP CONSTRAINT refuse")
        w.close()
    assert w.failures >= 2

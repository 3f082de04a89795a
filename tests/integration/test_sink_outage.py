"""ClickHouse refusing writes in the middle of a replay: the pipeline waits and retries
with backoff, reads nothing more meanwhile (back-pressure keeps memory bounded), shows
the condition in its metrics, and loses nothing once writes are taken again.

The refusal is real: a CHECK constraint that no row satisfies makes the engine reject
every insert into ``kpi_minute`` until the test drops it. The run happens in this
process (embedded chDB allows one process per directory), on the test's own database.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from koxpulse.metrics import Metrics
from koxpulse.runner import replay
from koxpulse.settings import load
from koxpulse.simulator import companion_paths, simulate
from sinks.clickhouse import ensure_schema
from sinks.tables import quote_ident
from tests.integration.test_replay_exact import assert_kpis_equal


def test_a_refusing_clickhouse_holds_the_pipeline_and_loses_nothing(
    chdb_client, chdb_dir: Path, database: str, tmp_path: Path
) -> None:
    stream = tmp_path / "s.jsonl"
    simulate(stream, hours=8, seed=6, scale=0.3)
    lines = stream.read_bytes().count(b"\n")
    ensure_schema(chdb_client, database)
    table = f"{quote_ident(database)}.kpi_minute"
    chdb_client.command(f"ALTER TABLE {table} ADD CONSTRAINT outage CHECK 0")
    settings = load(
        {
            "input": (str(stream),),
            "clickhouse": f"chdb://{chdb_dir}",
            "database": database,
            "sink_batch_rows": 200,
            "sink_backoff_max": 0.2,
            "detectors": False,
            "progress": "off",
        },
        env={},
    )
    metrics = Metrics()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(replay(settings, metrics)), daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while metrics.total("koxpulse_sink_errors_total") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.total("koxpulse_sink_errors_total", table="kpi_minute") >= 3
    assert metrics.value("koxpulse_sink_up") == 0
    read_during_outage = metrics.total("koxpulse_messages_read_total")
    time.sleep(1.5)
    # back-pressure: nothing more was read while writes failed, so nothing piled up
    assert metrics.total("koxpulse_messages_read_total") == read_during_outage
    assert read_during_outage < lines
    chdb_client.command(f"ALTER TABLE {table} DROP CONSTRAINT outage")
    t.join(timeout=120)
    assert not t.is_alive()
    assert result and metrics.value("koxpulse_sink_up") == 1
    assert metrics.total("koxpulse_messages_read_total") == lines
    got = chdb_client.query(
        "SELECT formatDateTime(window_start, '%Y-%m-%dT%H:%i:%S.000Z') AS window_start, region, "
        "channel, scans, unique_codes, scanners, redemptions, orders, revenue, buyers, "
        f"repeat_buyers, redemption_rate, repurchase_rate FROM {table} FINAL "
        "ORDER BY window_start, region, channel"
    )
    rows = [dict(zip(got.column_names, r, strict=True)) for r in got.result_rows]
    truth = [json.loads(x) for x in companion_paths(stream).truth.read_text().splitlines()]
    assert_kpis_equal(rows, truth)

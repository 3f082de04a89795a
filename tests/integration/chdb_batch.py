"""Run many read-only queries against one chDB directory in a process of its own.

chDB allows one data directory per process, and the test process may already hold
the session's; one subprocess per query would pay chDB's start-up each time. Reads a
JSON list of SQL texts on stdin and writes, per query, its column names and types
(from ``DESCRIBE``, which also works for an empty result) and its rows.

    python -m tests.integration.chdb_batch /path/to/chdb < queries.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    from sinks.clickhouse import ClickHouseTarget, connect

    queries = json.load(sys.stdin)
    client = connect(ClickHouseTarget.parse(f"chdb://{sys.argv[1]}"))
    out: list[dict[str, Any]] = []
    try:
        for sql in queries:
            try:
                described = client.query(f"DESCRIBE ({sql})", settings={"readonly": 1})
                result = client.query(sql, settings={"readonly": 1})
                out.append(
                    {
                        "columns": [r[0] for r in described.result_rows],
                        "types": [r[1] for r in described.result_rows],
                        "rows": [list(r) for r in result.result_rows],
                    }
                )
            except Exception as exc:
                out.append({"error": str(exc).strip().splitlines()[0]})
    finally:
        client.close()
    json.dump(out, sys.stdout, default=str, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

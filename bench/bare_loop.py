"""The ceiling: read a JSON-lines file, parse each line with orjson and count by type.

Nothing else: no validation, no dedup, no windows, no writes. koxpulse's replay
is measured against this loop on the same file in the same run.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections import Counter

import orjson


def main(path: str) -> None:
    started = time.perf_counter()
    cpu = time.process_time()
    counts: Counter[str] = Counter()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line in f:
            try:
                doc = orjson.loads(line)
                counts[doc.get("type", "?") if isinstance(doc, dict) else "?"] += 1
            except orjson.JSONDecodeError:
                counts["invalid"] += 1
    elapsed = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    print(
        json.dumps(
            {"messages": sum(counts.values()), "seconds": elapsed, "cpu_seconds": cpu_seconds}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])

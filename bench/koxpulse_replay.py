"""One koxpulse replay, timed from inside the process like the bare loop (imports excluded)."""

from __future__ import annotations

import json
import sys
import time

from koxpulse.runner import replay
from koxpulse.settings import load


def main(path: str, dsn: str, detectors: str) -> None:
    settings = load(
        {"input": (path,), "clickhouse": dsn, "progress": "off", "detectors": detectors == "on"}
    )
    cpu = time.process_time()
    result = replay(settings)
    print(
        json.dumps(
            {
                "messages": result.messages,
                "seconds": result.seconds,
                "cpu_seconds": time.process_time() - cpu,
                "ok": result.ok,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "on")

"""One koxpulse replay, timed from inside the process like the bare loop (imports excluded)."""

from __future__ import annotations

import json
import sys

from koxpulse.runner import replay
from koxpulse.settings import load


def main(path: str, dsn: str) -> None:
    settings = load({"input": (path,), "clickhouse": dsn, "progress": "off"})
    result = replay(settings)
    print(json.dumps({"messages": result.messages, "seconds": result.seconds, "ok": result.ok}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Generate the dashboards' JSON, check the committed files, validate against the SDK models.

``python -m dashboards.build`` (or ``koxpulse dashboards build``) rewrites
``dashboards/json/``; ``make test`` fails when the committed files differ from
what the Python definitions generate, so the JSON never drifts from the code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import alerts_fraud, pipeline, regional
from dashboards.catalog import Catalog
from dashboards.clickhouse import ClickHouseQuery, register

JSON_DIR = Path(__file__).resolve().parent / "json"
BUILDERS: tuple[tuple[str, Callable[[Catalog], db.Dashboard]], ...] = (
    ("regional-kpis", regional.build),
    ("alerts-fraud", alerts_fraud.build),
    ("pipeline-health", pipeline.build),
)


@dataclass(frozen=True, slots=True)
class Generated:
    files: dict[str, str]  # file name -> JSON text
    catalog: Catalog


def generate() -> Generated:
    catalog = Catalog()
    files = {}
    for name, build in BUILDERS:
        files[f"{name}.json"] = to_text(build(catalog).build())
    return Generated(files, catalog)


def to_text(dashboard: dm.Dashboard) -> str:
    """Stable JSON: sorted keys and a trailing newline, so diffs show real changes only."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + (
        "\n"
    )


def write(out: Path = JSON_DIR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(out: Path = JSON_DIR) -> list[str]:
    """Committed files that differ from the definitions (or are missing, or extra)."""
    files = generate().files
    bad = [n for n, text in files.items() if _read(out / n) != text]
    bad += sorted(p.name for p in out.glob("*.json") if p.name not in files)
    return bad


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def validate(doc: dict[str, Any]) -> None:
    """Decode with the SDK's models and re-encode: anything the models do not know is lost
    on the way, so a difference means a key or value outside the schema.

    Annotation targets are the one place the SDK's schema is knowingly too narrow (it
    models only the built-in Grafana datasource there); they are checked against the
    ClickHouse query model instead.
    """
    register()
    model = dm.Dashboard.from_json(doc)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    original = json.loads(json.dumps(doc))
    for side in (again, original):
        for anno in side.get("annotations", {}).get("list", []):
            anno.pop("target", None)
        for panel in side.get("panels", []):
            # the SDK decodes an absent plugin field config as an empty one
            defaults = panel.get("fieldConfig", {}).get("defaults", {})
            if defaults.get("custom") == {}:
                del defaults["custom"]
    for anno in doc.get("annotations", {}).get("list", []):
        if "target" in anno:
            target = anno["target"]
            if _plain(ClickHouseQuery.from_json(target)) != target:
                raise ValueError(f"annotation {anno.get('name')!r}: target is not a SQL query")
    if again != original:
        raise ValueError(f"dashboard {doc.get('uid')!r} does not round-trip through the SDK")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=JSONEncoder))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        bad = stale()
        if bad:
            print("stale dashboard JSON: " + ", ".join(bad) + " (run python -m dashboards.build)")
            return 1
        return 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Seeded simulator of a one-code-per-item marketing event stream, with ground truth.

`simulate` writes NAME.jsonl[.gz] plus NAME.truth.jsonl (expected kpi_minute rows),
NAME.labels.jsonl (labelled incidents) and NAME.expected.json (counts, invalid lines,
late event ids, experiment design). Same arguments, same bytes.
"""

from .runner import DEFAULT_START, SimulationSummary, simulate
from .writer import CompanionPaths, companion_paths

__all__ = ["DEFAULT_START", "CompanionPaths", "SimulationSummary", "companion_paths", "simulate"]

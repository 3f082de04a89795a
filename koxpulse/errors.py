"""One exception hierarchy, so the CLI can map failures to exit codes in one place.

Messages name the step and the input that failed; callers chain the cause with
``raise ... from`` so the original error stays available to debuggers.
"""

from __future__ import annotations


class KoxpulseError(Exception):
    """Base of every error koxpulse raises on purpose (exit code 1)."""


class ConfigError(KoxpulseError):
    """Bad usage or configuration: the user can fix it by changing a flag (exit code 2)."""


class SinkError(KoxpulseError):
    """A sink could not write or connect; the message names the sink and its target."""


class SourceError(KoxpulseError):
    """An input could not be opened or read; the message names the file or topic."""


class QueryError(KoxpulseError):
    """A user query failed on the ClickHouse side."""

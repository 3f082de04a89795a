"""Score alerts against labelled incidents, per kind, the way on-call experiences them.

An alert matches an incident when the kind is the same, the entity is the same
(or, for region-level kinds, the region and channel are), and the alert
starts between 5 minutes before the incident and 15 minutes after its end.
Precision counts alerts that match some incident; recall counts incidents
that some alert matches; delay is how long after the incident's start the
first matching alert fired (0 when it fired in the 5 minutes before).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from koxpulse.errors import ConfigError

REGION_LEVEL = {"high_scan_low_redemption", "kpi_anomaly"}
BEFORE_MS = 5 * 60_000
AFTER_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    kind: str
    entity_type: str
    entity_id: str
    region: str
    channel: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    alert_id: str
    kind: str
    entity_type: str
    entity_id: str
    region: str
    channel: str
    starts_at: int


@dataclass(frozen=True, slots=True)
class KindScore:
    kind: str
    incidents: int
    detected: int
    alerts: int
    matched_alerts: int
    median_delay_s: float | None
    worst_delay_s: float | None

    @property
    def precision(self) -> float | None:
        return self.matched_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.incidents if self.incidents else None


def _ms(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text} has no UTC offset")
    return int(dt.timestamp() * 1000)


def load_labels(path: Path) -> list[Incident]:
    """Read a labels file (JSON lines, as written by ``koxpulse simulate --incidents``)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(
                Incident(
                    incident_id=str(d.get("incident_id", n)),
                    kind=d["kind"],
                    entity_type=d.get("entity_type", ""),
                    entity_id=d.get("entity_id", ""),
                    region=d.get("region", ""),
                    channel=d.get("channel", ""),
                    start=_ms(d["start"]),
                    end=_ms(d["end"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"labels file {path} line {n}: {exc}") from exc
    return out


def matches(alert: ScoredAlert, inc: Incident) -> bool:
    if alert.kind != inc.kind:
        return False
    if not inc.start - BEFORE_MS <= alert.starts_at <= inc.end + AFTER_MS:
        return False
    if inc.kind in REGION_LEVEL and inc.entity_type == "region":
        return alert.region == inc.region and alert.channel == inc.channel
    return alert.entity_type == inc.entity_type and alert.entity_id == inc.entity_id


def score(alerts: Iterable[ScoredAlert], incidents: Iterable[Incident]) -> list[KindScore]:
    alerts = list(alerts)
    incidents = list(incidents)
    kinds = sorted({a.kind for a in alerts} | {i.kind for i in incidents})
    out = []
    for kind in kinds:
        ka = [a for a in alerts if a.kind == kind]
        ki = [i for i in incidents if i.kind == kind]
        delays = []
        for inc in ki:
            hits = [a.starts_at for a in ka if matches(a, inc)]
            if hits:
                delays.append(max(0, min(hits) - inc.start) / 1000)
        matched = sum(1 for a in ka if any(matches(a, i) for i in ki))
        out.append(
            KindScore(
                kind=kind,
                incidents=len(ki),
                detected=len(delays),
                alerts=len(ka),
                matched_alerts=matched,
                median_delay_s=statistics.median(delays) if delays else None,
                worst_delay_s=max(delays) if delays else None,
            )
        )
    return out


def incident_delays(
    alerts: Iterable[ScoredAlert], incidents: Iterable[Incident]
) -> list[float | None]:
    """Per incident, seconds from its start to its first matching alert (None: missed)."""
    alerts = list(alerts)
    out: list[float | None] = []
    for inc in incidents:
        hits = [a.starts_at for a in alerts if matches(a, inc)]
        out.append(max(0, min(hits) - inc.start) / 1000 if hits else None)
    return out


def format_overall_delay(delays: list[float | None]) -> str:
    """One line: the median and worst delay over every incident found, of all kinds."""
    found = [d for d in delays if d is not None]
    if not found:
        return "no incident found\n"
    return (
        f"over all {len(delays)} incidents: {len(found)} found, median delay "
        f"{statistics.median(found) / 60:.1f} min, worst {max(found) / 60:.1f} min\n"
    )


def format_scores(scores: list[KindScore]) -> str:
    head = (
        f"{'kind':<26}{'incidents':>10}{'detected':>9}{'alerts':>7}{'precision':>10}"
        f"{'recall':>8}{'median delay':>14}{'worst delay':>13}"
    )
    lines = [head]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v / 60:.1f} min"

    for s in scores:
        lines.append(
            f"{s.kind:<26}{s.incidents:>10}{s.detected:>9}{s.alerts:>7}{pct(s.precision):>10}"
            f"{pct(s.recall):>8}{secs(s.median_delay_s):>14}{secs(s.worst_delay_s):>13}"
        )
    total_i = sum(s.incidents for s in scores)
    total_d = sum(s.detected for s in scores)
    total_a = sum(s.alerts for s in scores)
    total_m = sum(s.matched_alerts for s in scores)
    lines.append(
        f"{'all kinds':<26}{total_i:>10}{total_d:>9}{total_a:>7}"
        f"{pct(total_m / total_a if total_a else None):>10}"
        f"{pct(total_d / total_i if total_i else None):>8}"
    )
    return "\n".join(lines) + "\n"

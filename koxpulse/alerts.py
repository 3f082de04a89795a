"""Alerts as plain values, and the lifecycle every alert kind shares.

Detectors only say "this entity looks wrong at time t, here is the evidence".
:class:`AlertTracker` turns those observations into one alert per incident:
a stable id (same incident, same id, also across replays, because it derives
from event data only), ``firing`` on the first observation, updates while it
keeps firing, ``resolved`` with ``ends_at`` once the entity has been quiet for
a while of event time. Any sink (ClickHouse, Kafka, Alertmanager) takes the
resulting :class:`Alert` as it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = (
    "high_scan_low_redemption",
    "kpi_anomaly",
    "duplicate_code",
    "reward_farming",
    "cross_region_scan",
    "outlet_self_redemption",
    "impossible_travel",
)
SEVERITIES = ("critical", "warning", "info")
ENTITY_TYPES = ("region", "outlet", "user", "device", "code", "batch")


@dataclass(frozen=True, slots=True)
class Observation:
    """One detector's verdict at event time ``t`` about one entity."""

    kind: str
    entity_type: str
    entity_id: str
    t: int  # epoch ms, event time
    region: str = ""
    channel: str = ""
    severity: str = "warning"
    value: float | None = None
    baseline: float | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """One row of the ``alerts`` table (contract §2)."""

    alert_id: str
    kind: str
    severity: str
    status: str  # "firing" or "resolved"
    region: str
    channel: str
    entity_type: str
    entity_id: str
    starts_at: int  # epoch ms
    ends_at: int | None
    value: float | None
    baseline: float | None
    summary: str
    details: dict[str, Any]

    def row(self, version: int) -> tuple[Any, ...]:
        """Values in the column order of ``sinks.tables.ALERTS``."""
        return (
            self.alert_id,
            self.kind,
            self.severity,
            self.status,
            self.region,
            self.channel,
            self.entity_type,
            self.entity_id,
            self.starts_at,
            self.ends_at,
            self.value,
            self.baseline,
            self.summary,
            json.dumps(self.details, ensure_ascii=False, sort_keys=True, default=str),
            version,
        )


def alert_id(kind: str, entity_type: str, entity_id: str, region: str, starts_at: int) -> str:
    """Deterministic id of an incident: the same data always gives the same id."""
    key = f"{kind}\x1f{entity_type}\x1f{entity_id}\x1f{region}\x1f{starts_at}".encode()
    return kind + "-" + hashlib.blake2b(key, digest_size=8).hexdigest()


_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class AlertTracker:
    """Groups observations into incidents and resolves them after a quiet period.

    ``quiet_ms``: event time without a new observation after which an incident
    is resolved (its ``ends_at`` is the last observation plus this period, the
    moment we were sure it was over).
    """

    quiet_ms: int = 15 * 60_000
    open: dict[tuple[str, str, str, str], Alert] = field(default_factory=dict)
    last_seen: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    def observe_all(self, obs: Observation) -> list[Alert]:
        """Record an observation; returns the rows it changes: the alert when it is new or
        materially changed, preceded by the resolution of the entity's previous incident
        when that one had been quiet for ``quiet_ms`` before this observation.

        Whether an observation continues an incident depends only on event times, never
        on when :meth:`advance` happened to run, so the same observations give the same
        alerts however a run was batched, partitioned or resumed.
        """
        out: list[Alert] = []
        key = (obs.kind, obs.entity_type, obs.entity_id, obs.region)
        last = self.last_seen.get(key)
        if last is not None and obs.t - last >= self.quiet_ms:
            previous = self.open.pop(key, None)
            del self.last_seen[key]
            if previous is not None:
                out.append(replace(previous, status="resolved", ends_at=last + self.quiet_ms))
        alert = self.observe(obs)
        if alert is not None:
            out.append(alert)
        return out

    def observe(self, obs: Observation) -> Alert | None:
        """Record an observation; returns the alert when it is new or materially changed.

        Use :meth:`observe_all` in a pipeline: this one leaves splitting incidents by
        quiet periods to :meth:`advance`.
        """
        key = (obs.kind, obs.entity_type, obs.entity_id, obs.region)
        current = self.open.get(key)
        self.last_seen[key] = max(self.last_seen.get(key, obs.t), obs.t)
        if current is None:
            alert = Alert(
                alert_id=alert_id(obs.kind, obs.entity_type, obs.entity_id, obs.region, obs.t),
                kind=obs.kind,
                severity=obs.severity,
                status="firing",
                region=obs.region,
                channel=obs.channel,
                entity_type=obs.entity_type,
                entity_id=obs.entity_id,
                starts_at=obs.t,
                ends_at=None,
                value=obs.value,
                baseline=obs.baseline,
                summary=obs.summary,
                details=obs.details,
            )
            self.open[key] = alert
            return alert
        if _SEVERITY_RANK.get(obs.severity, 0) > _SEVERITY_RANK.get(current.severity, 0):
            updated = replace(
                current,
                severity=obs.severity,
                value=obs.value,
                baseline=obs.baseline,
                summary=obs.summary,
                details=obs.details,
            )
            self.open[key] = updated
            return updated
        return None

    def advance(self, now: int) -> list[Alert]:
        """Resolve every incident quiet for ``quiet_ms`` of event time before ``now``."""
        done = [k for k, t in self.last_seen.items() if now - t >= self.quiet_ms]
        out = []
        for key in done:
            alert = self.open.pop(key, None)
            last = self.last_seen.pop(key)
            if alert is not None:
                out.append(replace(alert, status="resolved", ends_at=last + self.quiet_ms))
        return out

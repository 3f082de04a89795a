"""Alert delivery to Alertmanager's v2 API (contract: "Alerts in Alertmanager").

Alertmanager identifies an alert by its label set and forgets alerts that are
not re-sent, so a client has to keep telling it what fires: every firing alert
is re-sent on an interval, and a resolved one is sent with ``endsAt`` for a few
minutes so that every member of an HA pair hears of it. ``startsAt``/``endsAt``
are the alert's event times, which is what lets a replay deliver past alerts.

Delivery must never hold up the dataflow, so the detection step only hands
alerts to :meth:`AlertmanagerSender.submit`, which queues and returns. Each
configured Alertmanager has its own queue and sender thread (one that is down
cannot delay the other), retries with exponential backoff and jitter, and a
bounded queue: when it is full the oldest *resend* is dropped (the next resend
carries the same state), never a new or changed alert's first send. First sends
are only given up beyond a hard cap of several times the queue size, and at exit
once the bounded flush wait has passed; every drop is counted.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import random
import ssl
import string
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from koxpulse.alerts import Alert
from koxpulse.errors import ConfigError
from koxpulse.metrics import Metrics
from koxpulse.settings import Settings
from koxpulse.timeutil import ms_to_iso

log = logging.getLogger(__name__)

RESOLVED_RESEND_S = 300.0  # resolved alerts are re-sent (with endsAt) for 5 minutes
MAX_BATCH = 200  # alerts per post
HARD_CAP_FACTOR = 4  # first sends kept beyond the queue size, as a last memory guard
DESCRIPTION_LIMIT = 2000
# Alertmanager refuses the payload itself: sending it again cannot help. Anything else
# (network, 5xx, 429, and 401/403 too, which a credential rotation in progress causes)
# is retried with backoff while the alerts wait in the bounded queue.
REJECTED = frozenset({400, 413, 422})
URL_FIELDS = ("region", "channel", "kind", "alert_id", "entity_type", "entity_id", "starts_at_ms")

# (url, body, headers, timeout, ssl context) -> (HTTP status, first line of the response)
Transport = Callable[[str, bytes, dict[str, str], float, ssl.SSLContext | None], tuple[int, str]]
Key = tuple[str, str]  # (alert_id, severity): one Alertmanager label set


@dataclass(frozen=True, slots=True)
class AlertmanagerConfig:
    """Where and how to deliver; credentials are read from files, never shown."""

    urls: tuple[str, ...]
    resend_interval_s: float = 60.0
    resolved_resend_s: float = RESOLVED_RESEND_S
    queue_size: int = 10_000
    flush_timeout_s: float = 10.0
    timeout_s: float = 10.0
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    ca_file: str = ""
    dashboard_url: str = ""
    runbook_url: str = ""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Settings) -> AlertmanagerConfig:
        for url in s.alertmanager_urls:
            if urlsplit(url).username is not None:
                raise ConfigError(
                    f"--alertmanager {redact(url)}: put no credentials in the URL, use "
                    "--alertmanager-user with --alertmanager-password-file, or "
                    "--alertmanager-token-file"
                )
        if s.alertmanager_token_file and (s.alertmanager_user or s.alertmanager_password_file):
            raise ConfigError("give either Alertmanager basic auth or a bearer token, not both")
        if bool(s.alertmanager_user) != bool(s.alertmanager_password_file):
            raise ConfigError(
                "Alertmanager basic auth needs both --alertmanager-user and "
                "--alertmanager-password-file"
            )
        password = _secret(s.alertmanager_password_file, "--alertmanager-password-file")
        token = _secret(s.alertmanager_token_file, "--alertmanager-token-file")
        if s.alertmanager_ca and not Path(s.alertmanager_ca).is_file():
            raise ConfigError(f"--alertmanager-ca {s.alertmanager_ca}: no such file")
        for flag, template in (
            ("--alertmanager-dashboard-url", s.alertmanager_dashboard_url),
            ("--alertmanager-runbook-url", s.alertmanager_runbook_url),
        ):
            check_template(template, flag)
        return cls(
            urls=s.alertmanager_urls,
            resend_interval_s=s.alertmanager_resend_interval,
            queue_size=s.alertmanager_queue_size,
            flush_timeout_s=s.alertmanager_flush_timeout,
            user=s.alertmanager_user,
            password=password,
            token=token,
            ca_file=s.alertmanager_ca,
            dashboard_url=s.alertmanager_dashboard_url,
            runbook_url=s.alertmanager_runbook_url,
        )

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "User-Agent": "koxpulse"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        elif self.user:
            pair = f"{self.user}:{self.password}".encode()
            h["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return h


def _secret(path: str, flag: str) -> str:
    if not path:
        return ""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from exc
    if not value:
        raise ConfigError(f"{flag} {path}: the file is empty")
    return value


def check_template(template: str, flag: str) -> None:
    """Refuse a URL template with a placeholder we cannot fill, before the run starts."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{flag} {template!r}: {exc}") from exc
    unknown = sorted(set(names) - set(URL_FIELDS))
    if unknown:
        raise ConfigError(
            f"{flag} {template!r}: unknown placeholder {{{unknown[0]}}} "
            f"(known: {', '.join('{' + f + '}' for f in URL_FIELDS)})"
        )


def redact(url: str) -> str:
    """scheme://host:port/path without user information: safe for logs and labels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def endpoint(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"


# -- payloads -----------------------------------------------------------------------------


def labels_of(alert: Alert) -> dict[str, str]:
    """The contract's label set; empty values are left out (Prometheus: empty = absent)."""
    labels = {
        "alertname": alert.kind,
        "severity": alert.severity,
        "region": alert.region,
        "channel": alert.channel,
        "entity_type": alert.entity_type,
        "entity_id": alert.entity_id,
        "alert_id": alert.alert_id,
    }
    return {k: v for k, v in labels.items() if v}


def _fill(template: str, alert: Alert) -> str:
    values = {
        "region": alert.region,
        "channel": alert.channel,
        "kind": alert.kind,
        "alert_id": alert.alert_id,
        "entity_type": alert.entity_type,
        "entity_id": alert.entity_id,
        "starts_at_ms": str(alert.starts_at),
    }
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})


def describe(alert: Alert) -> str:
    """The description annotation: what, where, the figure against its usual level, evidence."""
    where = "/".join(x for x in (alert.region, alert.channel) if x) or "-"
    text = f"{alert.kind} on {alert.entity_type} {alert.entity_id} in {where}"
    if alert.value is not None:
        text += f": value {alert.value:g}"
        if alert.baseline is not None:
            text += f" against a usual {alert.baseline:g}"
    evidence = json.dumps(alert.details, ensure_ascii=False, sort_keys=True, default=str)
    text += f". Evidence: {evidence}"
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def to_payload(alert: Alert, config: AlertmanagerConfig) -> dict[str, Any]:
    """One postable alert of the v2 API: labels, annotations, event-time startsAt/endsAt."""
    annotations = {"summary": alert.summary, "description": describe(alert)}
    payload: dict[str, Any] = {"labels": labels_of(alert), "annotations": annotations}
    if config.dashboard_url:
        annotations["dashboard_url"] = _fill(config.dashboard_url, alert)
        payload["generatorURL"] = annotations["dashboard_url"]
    if config.runbook_url:
        annotations["runbook_url"] = _fill(config.runbook_url, alert)
    payload["startsAt"] = ms_to_iso(alert.starts_at)
    if alert.ends_at is not None:
        payload["endsAt"] = ms_to_iso(alert.ends_at)
    return payload


# -- transport ------------------------------------------------------------------------------


def http_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None
) -> tuple[int, str]:
    """POST with urllib; HTTP errors come back as a status, network errors raise OSError.

    Proxy variables of the environment are not used: Alertmanager sits next to the
    pipeline, and a proxy picked up by accident would silently reroute alerts.
    """
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as resp:
            return int(resp.status), ""
    except urllib.error.HTTPError as exc:
        text = exc.read(500).decode("utf-8", "replace").strip().splitlines()
        return int(exc.code), text[0] if text else ""


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verification is always on: the system CAs, or the given bundle."""
    return ssl.create_default_context(cafile=ca_file or None)


# -- one Alertmanager ---------------------------------------------------------------------


@dataclass(slots=True)
class _Active:
    payload: dict[str, Any]
    resolved_at: float | None
    next_resend: float


@dataclass(slots=True)
class _First:
    payload: dict[str, Any]
    submitted: float


class Delivery:
    """Queue, resend schedule and retries for one Alertmanager.

    :meth:`step` does one round (schedule due resends, post one batch when not
    backing off) and says how long until there is work again; the thread only
    loops over it, so tests drive it with their own clock.
    """

    def __init__(
        self,
        url: str,
        config: AlertmanagerConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        transport: Transport = http_post,
    ) -> None:
        self.url = endpoint(url)
        self.name = redact(url).split("://", 1)[1]
        self.config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._transport = transport
        self._headers = config.headers()
        self._context = tls_context(config.ca_file) if url.startswith("https:") else None
        self._lock = threading.Condition()
        self._first: OrderedDict[Key, _First] = OrderedDict()
        self._resend: OrderedDict[Key, None] = OrderedDict()
        self._active: dict[Key, _Active] = {}
        self._attempt = 0
        self._retry_at = 0.0
        self._closing = False
        self._deadline = math.inf
        self._next_due = math.inf  # earliest moment a resend or an expiry can be due
        self._overflow_logged = False
        self._outage_logged = False
        m = metrics
        self._sent_first = m.am_sent.labels(self.name, "first")
        self._sent_resend = m.am_sent.labels(self.name, "resend")
        self._failures = m.am_failures
        self._dropped = m.am_dropped
        self._queue_gauge = m.am_queue.labels(self.name)
        self._active_gauge = m.am_active.labels(self.name)
        self._request = m.am_request.labels(self.name)
        self._delivery = m.am_delivery.labels(self.name)
        self._queue_gauge.set(0)
        self._active_gauge.set(0)

    # -- called by the dataflow (never blocks on the network) --------------------------

    def put(self, key: Key, payload: dict[str, Any], resolved: bool) -> None:
        with self._lock:
            now = self._clock()
            due = now + self.config.resend_interval_s
            self._active[key] = _Active(payload, now if resolved else None, due)
            self._next_due = min(self._next_due, due)
            # the newest state of this label set supersedes what was queued for it
            self._resend.pop(key, None)
            pending = self._first.get(key)
            if pending is not None:
                # a new object in the same place: a post in flight with the old one must not
                # count this state as delivered
                self._first[key] = _First(payload, pending.submitted)
            else:
                self._first[key] = _First(payload, now)
                self._make_room()
            self._update_gauges()
            self._lock.notify()

    @property
    def depth(self) -> int:
        return len(self._first) + len(self._resend)

    def _make_room(self) -> None:
        cap = self.config.queue_size
        while self.depth > cap and self._resend:
            self._resend.popitem(last=False)
            self._dropped.labels(self.name, "queue_full").inc()
        hard = cap * HARD_CAP_FACTOR
        while len(self._first) > hard:
            key, _ = self._first.popitem(last=False)
            self._dropped.labels(self.name, "overflow").inc()
            if not self._overflow_logged:  # once per outage; the counter has the number
                self._overflow_logged = True
                log.error(
                    "alertmanager %s: more than %d new alerts waiting, dropping the oldest "
                    "(first: %s); see koxpulse_alertmanager_dropped_total",
                    self.name,
                    hard,
                    key[0],
                )

    def _schedule(self, now: float) -> None:
        """Queue resends that are due while there is room; forget old resolved alerts.

        A due resend that finds the queue full stays due and is queued in a later
        round, so a healthy Alertmanager gets every resend even when more alerts
        are active than the queue holds. The scan over active alerts only runs when
        something can be due, so a round costs nothing between resend times.
        """
        if now < self._next_due:
            return
        keep_resolved, every = self.config.resolved_resend_s, self.config.resend_interval_s
        room = self.config.queue_size - self.depth
        expired = []
        next_due = math.inf
        for key, a in self._active.items():
            if a.resolved_at is not None and now - a.resolved_at >= keep_resolved:
                expired.append(key)
                continue
            if key in self._first:
                pass  # its delivery sets the next resend time
            elif a.next_resend <= now:
                if room <= 0:
                    next_due = now  # still due: the next round tries again
                    continue
                if key not in self._resend:
                    self._resend[key] = None
                    room -= 1
                a.next_resend = now + every
                next_due = min(next_due, a.next_resend)
            else:
                next_due = min(next_due, a.next_resend)
            if a.resolved_at is not None:
                next_due = min(next_due, a.resolved_at + keep_resolved)
        for key in expired:
            del self._active[key]
        self._next_due = next_due

    def _update_gauges(self) -> None:
        self._queue_gauge.set(self.depth)
        self._active_gauge.set(len(self._active))

    # -- the sender's round -----------------------------------------------------------

    def step(self) -> float:
        """Post one batch if there is one and no backoff is pending; seconds until next work."""
        with self._lock:
            now = self._clock()
            if now < self._retry_at:  # backing off: nothing to schedule or send yet
                self._update_gauges()
                return self._retry_at - now
            if not self._closing:
                self._schedule(now)
            self._update_gauges()
            firsts = list(self._first.items())[:MAX_BATCH]
            resends = [] if self._closing else list(self._resend)[: MAX_BATCH - len(firsts)]
            if not firsts and not resends:
                return self._idle_wait(now)
            payloads = [f.payload for _, f in firsts]
            payloads += [self._active[k].payload for k in resends if k in self._active]
        ok = self._post(payloads)  # outside the lock: put() never waits for the network
        with self._lock:
            now = self._clock()
            if ok is None:  # retry later, items stay at the head of the queue
                self._attempt += 1
                delay = min(
                    self.config.backoff_max_s,
                    self.config.backoff_base_s * 2 ** (self._attempt - 1),
                )
                self._retry_at = now + delay * (0.5 + 0.5 * self._rng.random())
                return self._retry_at - now
            self._attempt = 0
            self._retry_at = 0.0
            self._overflow_logged = False
            for key, item in firsts:
                if self._first.get(key) is item:
                    del self._first[key]
                if ok:
                    self._delivery.observe(max(0.0, now - item.submitted))
                active = self._active.get(key)
                if active is not None:
                    active.next_resend = now + self.config.resend_interval_s
                    self._next_due = min(self._next_due, active.next_resend)
            for key in resends:
                self._resend.pop(key, None)
            if ok:
                self._sent_first.inc(len(firsts))
                self._sent_resend.inc(len(payloads) - len(firsts))
            else:
                self._dropped.labels(self.name, "rejected").inc(len(payloads))
            self._update_gauges()
            self._lock.notify_all()
            return 0.0

    def _idle_wait(self, now: float) -> float:
        if self._closing:
            return 0.0
        if self._next_due == math.inf:
            return self.config.resend_interval_s
        return max(0.001, self._next_due - now)

    def _post(self, payloads: list[dict[str, Any]]) -> bool | None:
        """True: accepted; False: rejected for good (4xx); None: try again."""
        body = json.dumps(payloads, ensure_ascii=False).encode()
        started = self._clock()
        try:
            status, detail = self._transport(
                self.url, body, self._headers, self.config.timeout_s, self._context
            )
        except (OSError, http.client.HTTPException) as exc:  # URLError, refusals, timeouts,
            # and a peer that closed or spoke no HTTP (RemoteDisconnected, BadStatusLine)
            cause = getattr(exc, "reason", exc)
            timed_out = isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError)
            status, detail = 0, str(cause)
            reason = "timeout" if timed_out else "connection"
        else:
            reason = "http_5xx" if status >= 500 else "http_4xx"
        finally:
            self._request.observe(max(0.0, self._clock() - started))
        if 200 <= status < 300:
            if self._outage_logged:
                log.warning("alertmanager %s: delivering again", self.name)
                self._outage_logged = False
            return True
        self._failures.labels(self.name, "http_429" if status == 429 else reason).inc()
        if status in REJECTED:
            log.error(
                "alertmanager %s rejected %d alerts (HTTP %d): %s",
                self.name,
                len(payloads),
                status,
                detail,
            )
            return False
        if not self._outage_logged:
            what = f"HTTP {status}" if status else detail
            level = logging.ERROR if status in (401, 403) else logging.WARNING
            log.log(level, "alertmanager %s: delivery failed (%s), retrying", self.name, what)
            self._outage_logged = True
        return None

    # -- thread ---------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            wait = self.step()
            with self._lock:
                if self._closing_due():
                    return
                # an alert put between step() and here must not wait for the next timeout
                ready = self.depth > 0 and self._clock() >= self._retry_at
                if wait > 0 and not ready:
                    if self._closing:
                        wait = min(wait, max(0.0, self._deadline - self._clock()))
                    self._lock.wait(wait)
                if self._closing_due():
                    return

    def _closing_due(self) -> bool:
        return self._closing and (not self._first or self._clock() >= self._deadline)

    def close(self, deadline: float) -> None:
        with self._lock:
            self._closing = True
            self._deadline = deadline
            self._lock.notify_all()

    def abandon(self) -> int:
        """Count what is still queued as dropped at exit; returns how many first sends."""
        with self._lock:
            left = len(self._first)
            if left:
                self._dropped.labels(self.name, "shutdown").inc(left)
            self._first.clear()
            self._resend.clear()
            self._update_gauges()
            return left


class AlertmanagerSender:
    """Fans every alert out to each configured Alertmanager, one thread each."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: Transport = http_post,
    ) -> None:
        if not config.urls:
            raise ConfigError("no Alertmanager URL given")
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        seed = rng if rng is not None else random.Random()
        self.deliveries = [
            Delivery(
                url,
                config,
                metrics,
                clock=clock,
                rng=random.Random(seed.random()),
                transport=transport,
            )
            for url in config.urls
        ]
        self._severity: dict[str, tuple[str, dict[str, Any]]] = {}  # alert_id -> current set
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> AlertmanagerSender:
        for d in self.deliveries:
            t = threading.Thread(target=d.run, name=f"koxpulse-am-{d.name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def submit(self, alerts: Iterable[Alert]) -> None:
        """Queue alerts (raised, escalated or resolved) for every Alertmanager; returns at once."""
        with self._lock:
            for alert in alerts:
                payload = to_payload(alert, self.config)
                key = (alert.alert_id, alert.severity)
                previous = self._severity.get(alert.alert_id)
                if previous is not None and previous[0] != alert.severity:
                    # The severity label changed, so Alertmanager sees a new alert: resolve the
                    # old label set now (wall clock: there is no event time for "superseded").
                    old = dict(previous[1])
                    old["endsAt"] = _iso_seconds(max(self._wall(), alert.starts_at / 1000))
                    for d in self.deliveries:
                        d.put((alert.alert_id, previous[0]), old, resolved=True)
                if alert.status == "resolved":
                    self._severity.pop(alert.alert_id, None)
                else:
                    self._severity[alert.alert_id] = (alert.severity, payload)
                for d in self.deliveries:
                    d.put(key, payload, resolved=alert.status == "resolved")

    def close(self, timeout: float | None = None) -> int:
        """Deliver queued first sends for at most ``timeout`` seconds, then stop.

        Returns the number of first sends that could not be delivered (over all
        Alertmanagers); they are counted as dropped with reason ``shutdown``.
        """
        wait = self.config.flush_timeout_s if timeout is None else timeout
        deadline = self._clock() + wait
        for d in self.deliveries:
            d.close(deadline)
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - self._clock()) + self.config.timeout_s + 1)
        self._threads.clear()
        left = sum(d.abandon() for d in self.deliveries)
        if left:
            log.warning(
                "alertmanager: %d alert sends not delivered within %.0f s at exit", left, wait
            )
        return left


def _iso_seconds(t: float) -> str:
    return ms_to_iso(int(t * 1000))


# -- Bytewax ------------------------------------------------------------------------------


class _SenderPartition(StatelessSinkPartition[Sequence[Alert]]):
    def __init__(self, sender: AlertmanagerSender) -> None:
        self._sender = sender

    def write_batch(self, items: list[Sequence[Alert]]) -> None:
        for alerts in items:
            self._sender.submit(alerts)

    def close(self) -> None:
        """The runner flushes the sender after the dataflow, with a bounded wait."""


class AlertmanagerSink(DynamicSink[Sequence[Alert]]):
    """Hands each batch of alerts from the detection step to the background sender."""

    def __init__(self, sender: AlertmanagerSender) -> None:
        self._sender = sender

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SenderPartition:
        return _SenderPartition(self._sender)

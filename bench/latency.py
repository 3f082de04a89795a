"""Event → alert latency under a steady live load (``bench.live``), p50/p99.

One run: a fresh Tansu broker and a real Alertmanager; ``koxpulse run --kafka`` with
detectors on, ``--alertmanager``, a chosen ``--allowed-lateness`` and ``--idle-partition``;
then the live generator at ``rate`` events per second with fraud incidents stamped with
the wall clock. For each incident, from the wall time its trigger event was produced:

- **Alertmanager**: until the alert is first listed by Alertmanager's v2 API (polled
  every 50 ms, so up to 50 ms late);
- **kox.alerts**: until the alert message is read from the alerts topic;
- **ClickHouse row**: until the alert row was built for the ClickHouse writer (its
  ``version`` is that wall time in ns; the embedded chDB directory cannot be read
  while koxpulse owns it, so the insert itself, up to ``--sink-flush-interval``
  later, is not observed).

koxpulse judges an event once the watermark (the slowest partition's newest event
time minus the allowed lateness) has passed it. Each latency is split into the
*watermark wait* (from the trigger to the earliest moment the watermark can pass it,
its ``ts`` plus the allowed lateness, in wall time since ``ts`` is the wall clock: the
allowed lateness itself) and the rest (*after the watermark*: reading, the slowest
partition catching up, detection, delivery). The *watermark delay* samples koxpulse's
watermark gauge every 0.1 s: wall time minus watermark minus allowed lateness, i.e. how
far the slowest partition's processed events trail the wall clock.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench import alertmanager as am
from bench.kafka_run import metrics_args
from bench.tansu import free_port, tansu

Key = tuple[str, str]  # (kind, entity_id)


def percentile(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(xs: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "n": len(xs),
        "p50_s": r(percentile(xs, 50)),
        "p90_s": r(percentile(xs, 90)),
        "p99_s": r(percentile(xs, 99)),
        "max_s": r(max(xs) if xs else None),
        "min_s": r(min(xs) if xs else None),
    }


class Watchers:
    """First time each (kind, entity_id) was seen firing on kox.alerts and in Alertmanager."""

    def __init__(self, broker: str, am_url: str | None) -> None:
        self.topic: dict[Key, float] = {}
        self.am: dict[Key, float] = {}
        self.am_errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._consume, args=(broker,), daemon=True)]
        if am_url is not None:
            self._threads.append(threading.Thread(target=self._poll, args=(am_url,), daemon=True))

    def __enter__(self) -> Watchers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _consume(self, broker: str) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": broker,
                "group.id": "bench-alert-watch",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "session.timeout.ms": 6000,
            }
        )
        md = consumer.list_topics("kox.alerts", timeout=10)
        consumer.assign(
            [
                TopicPartition("kox.alerts", p, OFFSET_BEGINNING)
                for p in md.topics["kox.alerts"].partitions
            ]
        )
        try:
            while not self._stop.is_set():
                for m in consumer.consume(num_messages=500, timeout=0.05):
                    now = time.time()
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise SystemExit(f"bench: kox.alerts: {err.str()}")
                        continue
                    doc = orjson.loads(m.value() or b"{}")
                    if doc.get("status") == "firing":
                        self.topic.setdefault((doc["kind"], doc["entity_id"]), now)
        finally:
            consumer.close()

    def _poll(self, url: str) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                listed = am.alerts(url)
            except OSError:
                self.am_errors += 1
                listed = []
            now = time.time()
            for a in listed:
                labels = a.get("labels", {})
                key = (labels.get("alertname", ""), labels.get("entity_id", ""))
                # seen somewhere between the request and its answer
                self.am.setdefault(key, (started + now) / 2)
            self._stop.wait(max(0.0, 0.05 - (time.time() - started)))


def clickhouse_versions(chdb: Path) -> dict[Key, float]:
    """First version (wall time the row was built) of each alert, by (kind, entity_id)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "koxpulse.cli",
            "query",
            "--clickhouse",
            f"chdb://{chdb}",
            "--format",
            "json",
            "SELECT kind, entity_id, min(version) AS v FROM koxpulse.alerts "
            "WHERE status = 'firing' GROUP BY kind, entity_id",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: alerts query failed: {proc.stderr.strip()[-300:]}")
    out: dict[Key, float] = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            out[(row["kind"], row["entity_id"])] = int(row["v"]) / 1e9
    return out


def textfile_histograms(path: Path) -> dict[str, dict[str, float | None]]:
    """_sum and _count of the histograms that split koxpulse's own share of the latency."""
    wanted = (
        "koxpulse_event_to_alert_seconds",
        "koxpulse_window_emission_delay_seconds",
        "koxpulse_alertmanager_delivery_seconds",
    )
    out: dict[str, dict[str, float]] = {w: {"sum": 0.0, "count": 0.0} for w in wanted}
    for line in path.read_text().splitlines():
        for w in wanted:
            for part in ("sum", "count"):
                if line.startswith(f"{w}_{part}"):
                    out[w][part] += float(line.rsplit(" ", 1)[1])
    return {
        w: {"count": v["count"], "mean_s": round(v["sum"] / v["count"], 3) if v["count"] else None}
        for w, v in out.items()
    }


class WatermarkSampler:
    """Wall time minus ``koxpulse_watermark_seconds`` minus the lateness, every 0.1 s."""

    def __init__(self, port: int, lateness: float) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.lateness = lateness
        self.delays: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> WatermarkSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            try:
                with urllib.request.urlopen(self.url, timeout=1) as r:
                    body = r.read().decode()
            except OSError:
                continue
            now = time.time()
            for line in body.splitlines():
                if line.startswith("koxpulse_watermark_seconds "):
                    wm = float(line.rsplit(" ", 1)[1])
                    if wm > 0:
                        self.delays.append(now - wm - self.lateness)


def textfile_total(path: Path, name: str) -> float:
    """Sum of a counter over its labels in a metrics textfile."""
    total = 0.0
    for line in path.read_text().splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_endpoint(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: koxpulse exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("bench: koxpulse's metrics endpoint never came up")


def run_latency(
    workdir: Path,
    rate: float,
    lateness: float,
    *,
    warmup: float = 5.0,
    span: float = 60.0,
    incidents: int = 60,
    margin: float = 10.0,
    idle_partition: float = 0.5,
    shipment_share: float | None = None,
) -> dict[str, Any]:
    tag = f"lat{lateness:g}" + ("" if shipment_share is None else f"-ship{shipment_share:g}")
    chdb = workdir / f"chdb-{tag}"
    textfile = workdir / f"metrics-{tag}.prom"
    inc_file = workdir / f"incidents-{tag}.jsonl"
    log = workdir / f"koxpulse-{tag}.log"
    tail = lateness + margin
    port = free_port()
    with (
        tansu() as (broker, _),
        am.alertmanager(workdir) as am_url,
        Watchers(broker, am_url) as watch,
        log.open("wb") as err,
    ):
        cmd = [
            sys.executable,
            "-m",
            "koxpulse.cli",
            "run",
            "--kafka",
            broker,
            "--kafka-group",
            tag,
            "--idle-exit",
            "3",
            "--clickhouse",
            f"chdb://{chdb}",
            "--detectors",
            "on",
            "--allowed-lateness",
            str(lateness),
            "--idle-partition",
            str(idle_partition),
            *metrics_args(port, textfile),
        ]
        if am_url is not None:
            cmd += ["--alertmanager", am_url]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for_endpoint(port, proc)
            extra = [] if shipment_share is None else ["7", str(shipment_share)]
            with WatermarkSampler(port, lateness) as sampler:
                gen = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.live",
                        broker,
                        str(rate),
                        str(warmup),
                        str(span),
                        str(tail),
                        str(incidents),
                        str(inc_file),
                        *extra,
                    ],
                    check=False,
                )
            if gen.returncode != 0:
                raise SystemExit("bench: the live generator failed")
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        time.sleep(0.5)  # last Alertmanager poll
    if proc.returncode != 0:
        raise SystemExit(f"bench: koxpulse ({tag}) failed: {log.read_text()[-800:]}")
    lines = [json.loads(x) for x in inc_file.read_text().splitlines()]
    produced = lines[-1]
    plan = [x for x in lines[:-1] if x["trigger_at"] is not None]
    rows = clickhouse_versions(chdb)
    sources = {"alertmanager": watch.am, "kox_alerts_topic": watch.topic, "clickhouse_row": rows}
    if am_url is None:
        del sources["alertmanager"]
    result: dict[str, Any] = {
        "allowed_lateness_s": lateness,
        "idle_partition_s": idle_partition,
        "shipment_share": 0.0025 if shipment_share is None else shipment_share,
        "rate_requested": rate,
        "rate_achieved": round(produced["rate"]),
        "events_produced": produced["sent"],
        "incidents": len(plan),
        "alertmanager_status": "installed" if am_url else "not installed (make tools)",
        "koxpulse_histograms": textfile_histograms(textfile),
        "late_events": int(textfile_total(textfile, "koxpulse_late_events_total")),
    }
    wait: list[float] = []
    for inc in plan:
        wait.append(inc["trigger_ts_ms"] / 1000 + lateness - inc["trigger_at"])
    result["watermark_wait"] = summary(wait)
    # the warm-up is left out: the first samples include the pipeline's start
    delays = sampler.delays[int(len(sampler.delays) * warmup / (warmup + span + tail)) :]
    result["watermark_delay"] = summary(delays)
    by_kind: dict[str, dict[str, Any]] = {}
    for name, seen in sources.items():
        lat: list[float] = []
        after: list[float] = []
        missed: list[str] = []
        for inc, w in zip(plan, wait, strict=True):
            t = seen.get((inc["kind"], inc["entity_id"]))
            if t is None:
                missed.append(f"{inc['kind']} {inc['entity_id']}")
                continue
            lat.append(t - inc["trigger_at"])
            after.append(t - inc["trigger_at"] - w)
            by_kind.setdefault(inc["kind"], {}).setdefault(name, []).append(t - inc["trigger_at"])
        result[name] = {
            **summary(lat),
            "missed": len(missed),
            "missed_incidents": missed,
            "after_watermark": summary(after),
        }
    result["by_kind_p50_s"] = {
        k: {n: round(percentile(v, 50) or 0.0, 3) for n, v in d.items()}
        for k, d in sorted(by_kind.items())
    }
    import shutil

    shutil.rmtree(chdb, ignore_errors=True)
    return result

"""Targets, the Markdown table and the printed summary from one ``make bench`` run."""

from __future__ import annotations

from typing import Any

GIB_MIB = 1024.0


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issues 3 and 9 with what was measured and whether it holds."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, want: str, holds: bool | None, note: str) -> None:
        out.append(
            {"target": name, "measured": measured, "wanted": want, "holds": holds, "note": note}
        )

    for r in doc.get("results", []):
        add(
            f"{r['name']}: koxpulse ÷ bare parse loop (issue 3)",
            r["ratio"],
            "≥ 0.5×",
            r["ratio"] >= 0.5,
            f"{r['koxpulse_events_per_s']:,} vs {r['bare_events_per_s']:,} events/s",
        )
    k = doc.get("kafka")
    if k:
        for det in ("on", "off"):
            one = k.get(f"koxpulse_1p_detectors_{det}")
            if one:
                add(
                    f"Kafka, 1 process, detectors {det}: koxpulse ÷ bare consume loop",
                    one["ratio_vs_bare"],
                    "≥ 0.6× (and ≥ 130k events/s)",
                    one["ratio_vs_bare"] >= 0.6 and one["events_per_s"] >= 130_000,
                    f"{one['events_per_s']:,} vs {k['bare_events_per_s']:,} events/s"
                    + (" (end to end)" if det == "on" else " (no detectors)"),
                )
        for det in ("on", "off"):
            ratio = k.get(f"two_vs_one_process_detectors_{det}")
            if ratio is not None:
                two = k[f"koxpulse_2p_detectors_{det}"]["events_per_s"]
                one = k[f"koxpulse_1p_detectors_{det}"]["events_per_s"]
                add(
                    f"Kafka, detectors {det}: 2 processes ÷ 1 process",
                    ratio,
                    "≥ 1.8×",
                    ratio >= 1.8,
                    f"{two:,} vs {one:,} events/s",
                )
        q = k.get("quix", {})
        for det in ("on", "off"):
            ratio = k.get(f"koxpulse_vs_quix_detectors_{det}")
            if ratio is not None:
                add(
                    f"Kafka, detectors {det}: koxpulse (1 process) ÷ Quix Streams",
                    ratio,
                    "≥ 8×",
                    ratio >= 8,
                    f"Quix {q['events_per_s']:,.0f} events/s",
                )
        if q.get("status") != "ok":
            add(
                "koxpulse ÷ Quix Streams",
                None,
                "≥ 8×",
                None,
                f"Quix Streams {q.get('status')}: {q.get('why', '')}",
            )
    for lat in doc.get("latency", []):
        src = "alertmanager" if "p99_s" in lat.get("alertmanager", {}) else "kox_alerts_topic"
        s = lat[src]
        add(
            f"event → alert p99, allowed lateness {lat['allowed_lateness_s']:g} s "
            f"({src.replace('_', ' ')})",
            s["p99_s"],
            "< 2 s",
            s["p99_s"] is not None and s["p99_s"] < 2 and s["missed"] == 0,
            f"p50 {_fmt(s['p50_s'])} s; watermark delay p99 "
            f"{_fmt(lat['watermark_delay']['p99_s'])} s; "
            f"{lat['rate_achieved']:,} events/s; {s['missed']} of {lat['incidents']} missed",
        )
    growth = memory_growth(doc.get("memory", []))
    if "on" in growth:
        g = growth["on"]
        add(
            f"peak RSS levels off: {g['large_users'] / 1e6:g}M ÷ {g['small_users'] / 1e6:g}M "
            "distinct users (detectors on)",
            round(g["ratio"], 2),
            "≤ 1.1×",
            g["ratio"] <= 1.1,
            f"{g['small']:,.0f} → {g['large']:,.0f} MiB"
            + (
                f"; detectors off {growth['off']['small']:,.0f} → {growth['off']['large']:,.0f}"
                if "off" in growth
                else ""
            ),
        )
    for m in doc.get("memory", []):
        if m["distinct_users"] == 1_000_000 and m.get("detectors", True):
            add(
                "peak RSS at 1M distinct users (file replay, detectors on)",
                m["peak_rss_mib"],
                "< 1,024 MiB",
                m["peak_rss_mib"] < GIB_MIB,
                f"{m['events']:,} events",
            )
    return out


def _holds(h: bool | None) -> str:
    return "**yes**" if h else ("**no**" if h is False else "n/a")


def markdown(doc: dict[str, Any]) -> str:
    info = doc["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items() if v)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {doc['when']} on {info['cores']} cores ({info.get('cpu', '?')}), "
        f"{info.get('memory_gib', '?')} GiB, Python {info['python']}; {libs}. "
        f"`make bench` took {doc.get('seconds_total', 0) / 60:.1f} minutes. "
        "Ratios are the headline: both sides of each one ran in the same run, alternately.",
        "",
        "## Targets",
        "",
        "| target | measured | wanted | holds | |",
        "|---|---|---|---|---|",
    ]
    for t in doc.get("targets", []):
        lines.append(
            f"| {t['target']} | {_fmt(t['measured'])} | {t['wanted']} | {_holds(t['holds'])} | "
            f"{t['note']} |"
        )
    lines += _replay(doc) + _kafka(doc) + _latency(doc) + _memory(doc) + _detectors(doc)
    lines += _profile(doc) + _method()
    return "\n".join(lines) + "\n"


def _replay(doc: dict[str, Any]) -> list[str]:
    results = doc.get("results", [])
    if not results:
        return []
    lines = [
        "",
        "## File replay",
        "",
        "| benchmark | events | bare loop (events/s) | koxpulse (events/s) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['messages']:,} | {r['bare_events_per_s']:,} | "
            f"{r['koxpulse_events_per_s']:,} | **{r['ratio']}×** | ≥ {r['target_ratio']}× |"
        )
        cpu = r.get("cpu")
        if isinstance(cpu, dict):
            lines.append(
                f"| {r['name']}, per CPU second | {r['messages']:,} | "
                f"{cpu['bare_events_per_cpu_s']:,} | {cpu['koxpulse_events_per_cpu_s']:,} | "
                f"{cpu['ratio']}× | |"
            )
        wall = r.get("wall_incl_startup")
        if isinstance(wall, dict):
            lines.append(
                f"| {r['name']}, wall clock incl. process start | {r['messages']:,} | "
                f"{wall['bare_events_per_s']:,} | {wall['koxpulse_events_per_s']:,} | "
                f"{wall['ratio']}× | |"
            )
    return lines


def _kafka(doc: dict[str, Any]) -> list[str]:
    k = doc.get("kafka")
    if not k:
        return []
    lines = [
        "",
        "## Kafka (one Tansu broker on this machine)",
        "",
        f"{k['messages']:,} messages of the same workload on {k['topics']}, produced once "
        f"with `koxpulse produce` ({k['produce_events_per_s']:,} events/s); every reader has "
        f"a consumer group of its own and reads all of it; median of {k['repeats']} "
        "alternating runs.",
        "",
        "| reader | events/s | ÷ bare loop | incl. start-up and final flush | runs |",
        "|---|---|---|---|---|",
        f"| bare confluent-kafka consume + orjson | {k['bare_events_per_s']:,} | 1.00× | | "
        f"{', '.join(f'{x:,}' for x in k['bare_events_per_s_all'])} |",
    ]
    for key, label in (
        ("koxpulse_1p_detectors_off", "`koxpulse run --kafka`, 1 process, detectors off"),
        ("koxpulse_1p_detectors_on", "`koxpulse run --kafka`, 1 process, detectors on"),
        ("koxpulse_2p_detectors_off", "`koxpulse run --kafka --processes 2`, detectors off"),
        ("koxpulse_2p_detectors_on", "`koxpulse run --kafka --processes 2`, detectors on"),
    ):
        r = k.get(key)
        if r:
            lines.append(
                f"| {label} | {r['events_per_s']:,} | **{r['ratio_vs_bare']}×** | "
                f"{r['events_per_s_incl_start_and_flush']:,} | "
                f"{', '.join(f'{x:,}' for x in r['events_per_s_all'])} |"
            )
    q = k.get("quix", {})
    if q.get("status") == "ok":
        lines.append(
            f"| Quix Streams {q.get('version') or ''}, windowed counts per (region, channel) | "
            f"{q['events_per_s']:,.0f} | {q['events_per_s'] / k['bare_events_per_s']:.3f}× | | "
            "1 run |"
        )
    lines.append("")
    for det in ("off", "on"):
        if f"two_vs_one_process_detectors_{det}" in k:
            lines.append(
                f"- 2 processes ÷ 1 process, detectors {det}: "
                f"**{k[f'two_vs_one_process_detectors_{det}']}×**"
            )
        if f"koxpulse_vs_quix_detectors_{det}" in k:
            lines.append(
                f"- koxpulse (1 process, detectors {det}) ÷ Quix Streams: "
                f"**{k[f'koxpulse_vs_quix_detectors_{det}']}×**"
            )
    if q.get("status") == "ok":
        lost = q["valid"] - q["windowed"]
        lines.append(
            f"- Quix Streams counted {q['windowed']:,} of {q['valid']:,} valid events in closed "
            f"windows ({lost:,} dropped as late, {q['windows']:,} windows): its watermark is "
            "per partition of the repartition topic, and with four topics read side by side it "
            "runs ahead of the slower topics. koxpulse holds a minute open until every input "
            "partition has passed it, so it counts all of them. Quix re-keys by (region, "
            "channel) through a repartition topic it writes to the same broker; it does no "
            "validation, dedup or ClickHouse writes."
        )
    else:
        lines.append(f"- Quix Streams: {q.get('status')}: {q.get('why', '')}")
    return lines


def _latency(doc: dict[str, Any]) -> list[str]:
    runs = doc.get("latency", [])
    if not runs:
        return []
    lines = [
        "",
        "## Event → alert latency (live stream, fraud incidents, wall-clock event times)",
        "",
        "| allowed lateness | measured at | n | p50 (s) | p90 (s) | p99 (s) | max (s) | "
        "missed | after the watermark could pass it: p50 / p99 (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for src, label in (
            ("alertmanager", "Alertmanager (v2 API)"),
            ("kox_alerts_topic", "`kox.alerts` topic"),
            ("clickhouse_row", "ClickHouse row built"),
        ):
            s = r.get(src)
            if not isinstance(s, dict) or "n" not in s:
                continue
            a = s["after_watermark"]
            lines.append(
                f"| {r['allowed_lateness_s']:g} s | {label} | {s['n']} | {_fmt(s['p50_s'])} | "
                f"{_fmt(s['p90_s'])} | {_fmt(s['p99_s'])} | {_fmt(s['max_s'])} | {s['missed']} | "
                f"{_fmt(a['p50_s'])} / {_fmt(a['p99_s'])} |"
            )
        for key, label in (
            ("watermark_wait", "watermark wait alone (ts + lateness − trigger)"),
            ("watermark_delay", "watermark delay (wall − watermark − lateness, every 0.1 s)"),
        ):
            w = r[key]
            lines.append(
                f"| {r['allowed_lateness_s']:g} s | {label} | {w['n']} | {_fmt(w['p50_s'])} | "
                f"{_fmt(w['p90_s'])} | {_fmt(w['p99_s'])} | {_fmt(w['max_s'])} | | |"
            )
    lines.append("")
    for r in runs:
        h = r["koxpulse_histograms"]
        e2a = h["koxpulse_event_to_alert_seconds"]["mean_s"]
        em = h["koxpulse_window_emission_delay_seconds"]["mean_s"]
        dl = h["koxpulse_alertmanager_delivery_seconds"]["mean_s"]
        lines.append(
            f"- allowed lateness {r['allowed_lateness_s']:g} s: {r['events_produced']:,} events "
            f"at {r['rate_achieved']:,} events/s (asked {r['rate_requested']:,.0f}), "
            f"{r['incidents']} incidents, `--idle-partition {r['idle_partition_s']:g}`, "
            f"shipments {r['shipment_share']:.3%} of the stream, "
            f"{r.get('late_events', 0):,} events late; "
            "koxpulse's own histograms (means): minute emitted "
            f"{_fmt(em)} s after it could close, batch receipt → alert out of detection "
            f"{_fmt(e2a)} s, hand-over → Alertmanager accepted {_fmt(dl)} s. "
            f"Alertmanager: {r['alertmanager_status']}."
        )
    return lines


def _memory(doc: dict[str, Any]) -> list[str]:
    runs = doc.get("memory", [])
    if not runs:
        return []
    lines = [
        "",
        "## Peak memory (`koxpulse run --input`, detectors on, synthetic distinct ids)",
        "",
        "| distinct users = codes | events (= event ids) | peak RSS (MiB) | run (s) |",
        "|---|---|---|---|",
    ]
    for m in runs:
        note = "" if m.get("detectors", True) else " (detectors off)"
        lines.append(
            f"| {m['distinct_users']:,}{note} | {m['events']:,} | **{m['peak_rss_mib']:,.0f}** | "
            f"{m['seconds']:,.1f} |"
        )
    lines.append("")
    for m in runs:
        curve: list[dict[str, Any]] = m.get("curve") or []
        if not curve:
            continue
        marks = [100_000, 250_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000]
        marks += [5_000_000, 6_000_000, 7_000_000]
        points = []
        for mark in marks:
            p = next((c for c in curve if c["messages"] >= mark), None)
            if p is not None:
                points.append(f"{mark / 1e6:g}M: {p['rss_mib']:,.0f}")
        det = "on" if m.get("detectors", True) else "off"
        lines.append(
            f"- RSS (MiB) after N events read, {m['distinct_users']:,} users, detectors {det}: "
            + ", ".join(points)
            + "."
        )
    growth = memory_growth(runs)
    for det, g in growth.items():
        lines.append(
            f"- detectors {det}: peak {g['small']:,.0f} MiB at {g['small_users']:,} users, "
            f"{g['large']:,.0f} MiB at {g['large_users']:,} users "
            f"({g['mib_per_million_users']:,.0f} MiB more per million distinct users)."
        )
    first = next((m["curve"][0] for m in runs if m.get("curve")), None)
    lines.append(
        f"- Peaks from {runs[0].get('peak_from', 'ru_maxrss')}."
        + (
            f" Right after start-up ({first['messages']:,} events read) the process already "
            f"holds {first['rss_mib']:,.0f} MiB: Python, Bytewax, the libraries and embedded "
            "ClickHouse (chDB)."
            if first
            else ""
        )
    )
    return lines


def memory_growth(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Peak RSS at 1M users and at the largest size, per detectors setting."""
    out: dict[str, dict[str, float]] = {}
    for det in (True, False):
        rs = sorted(
            (m for m in runs if m.get("detectors", True) is det), key=lambda m: m["distinct_users"]
        )
        small = next((m for m in rs if m["distinct_users"] >= 1_000_000), None)
        if small is None or rs[-1] is small:
            continue
        large = rs[-1]
        millions = (large["distinct_users"] - small["distinct_users"]) / 1e6
        out["on" if det else "off"] = {
            "small_users": small["distinct_users"],
            "small": small["peak_rss_mib"],
            "large_users": large["distinct_users"],
            "large": large["peak_rss_mib"],
            "ratio": large["peak_rss_mib"] / small["peak_rss_mib"],
            "mib_per_million_users": (large["peak_rss_mib"] - small["peak_rss_mib"]) / millions,
        }
    return out


def _detectors(doc: dict[str, Any]) -> list[str]:
    d = doc.get("detectors")
    if not d:
        return []
    return [
        "",
        "## Per-event cost of each fraud detector",
        "",
        "CPU ns per event, seeded synthetic stream (`bench/detectors.py`); target < 5,000 ns "
        "per detector:",
        "",
        "| detector | ns per event |",
        "|---|---|",
        *(f"| {name} | {ns:,.0f} |" for name, ns in d.items()),
    ]


def _profile(doc: dict[str, Any]) -> list[str]:
    p = doc.get("profile")
    if not p or "main" not in p:
        return []
    main = p["main"]
    areas = list(main["areas"].items())
    lines = [
        "",
        "## Where the time goes (`koxpulse run --input`, detectors on)",
        "",
        f"{p['tool']} profile of the file replay of the workload"
        + (f" ([{p['file']}]({p['file']}), speedscope format)" if p.get("file") else "")
        + f": the dataflow thread's {main['seconds']:.1f} s inside the dataflow by area "
        f"(start-up before it, {main.get('startup_seconds', 0):.1f} s, not included):",
        "",
        "| area | share |",
        "|---|---|",
        *(f"| {a} | {s:.1%} |" for a, s in areas),
        "",
        "Top functions by own time: "
        + "; ".join(f"{t['function']} {t['share']:.1%}" for t in main["top_self"][:8])
        + ".",
    ]
    others = [
        t for t in p.get("threads", []) if t["thread"] != main["thread"] and t["seconds"] > 0.2
    ]
    for t in others:
        lines.append(
            f"Other thread, {t['thread']}: {t['seconds']:.1f} s of samples"
            + (
                " (it inserts Arrow batches into chDB, which releases the GIL while it works)."
                if "clickhouse" in t["thread"]
                else "."
            )
        )
    if doc.get("where_time_goes"):
        lines += ["", doc["where_time_goes"]]
    return lines


def _method() -> list[str]:
    return [
        "",
        "## How each figure is measured",
        "",
        "- **File replay**: timed inside each process around the work (imports and the "
        "ClickHouse connection excluded), median of the repeats, run alternately; per-CPU-second "
        "figures divide by process CPU time. The bare loop reads each line, parses it with "
        "orjson and counts by type. koxpulse decodes and validates against the contract, splits "
        "off dead letters, judges lateness, de-duplicates, windows, writes to embedded ClickHouse "
        "(KPI rows and every accepted event) and, with detectors on, runs the fraud and KPI "
        "detectors.",
        "- **Kafka**: the bare loop times itself from its first message to its last. koxpulse is "
        "the real `koxpulse run --kafka` command (`--processes 2` included), timed from outside: "
        "its Prometheus endpoint (one per process) is read every 0.1 s, and the rate runs from "
        "the first message decoded (`koxpulse_messages_read_total`) to the last event through "
        "the aggregation step (sum of `koxpulse_events_total` over every outcome), each moment "
        "taken half-way between two reads. The column 'incl. start-up and final flush' is "
        "instead the whole process wall time minus the `--idle-exit` wait. Every reader uses "
        "koxpulse's consumer settings (prefetch tuned: `queued.min.messages=1000000`, "
        "`fetch.queue.backoff.ms=10`, `fetch.wait.max.ms=100`). Tansu itself runs on the "
        "same two cores.",
        "- **Quix Streams** runs in its own virtual environment (`.venv/quix`): its releases pin "
        "confluent-kafka below the version koxpulse uses. Topics are created with an explicit "
        "`retention.ms`, because Tansu reports no topic config otherwise and Quix derives its "
        "repartition topic's config from it.",
        "- **Latency**: a live generator (`bench/live.py`) stamps every event with the wall clock "
        "and produces it at a steady rate of at least half the measured 1-process "
        "detectors-on Kafka rate, with fraud incidents (duplicate code, reward farming, "
        "impossible travel, cross-region scans) spread evenly over a minute, so their position "
        "within the minute is uniform; each latency runs from the moment the incident's "
        "trigger event was produced. koxpulse judges an event once the watermark (slowest "
        "partition's newest event time minus the allowed lateness) has passed it, so the "
        "floor is the allowed lateness itself; each lateness is run with `--idle-partition` "
        "0.5 s, the low-latency setting (a partition silent that long no longer holds the "
        "watermark back). The ClickHouse figure is when the alert row was built for the "
        "writer (its version stamp): the embedded chDB directory cannot be read while "
        "koxpulse owns it, and the insert itself follows within `--sink-flush-interval` (2 s).",
        "- **Memory**: peak RSS is the kernel's `ru_maxrss` of each `koxpulse run --input` "
        "process (embedded ClickHouse included, which alone is a few hundred MiB).",
    ]


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for r in doc.get("results", []):
        lines.append(
            f"{r['name']}: {r['messages']:,} events; bare loop {r['bare_events_per_s']:,}/s, "
            f"koxpulse {r['koxpulse_events_per_s']:,}/s -> {r['ratio']}x "
            f"(target >= {r['target_ratio']}x)"
        )
    k = doc.get("kafka")
    if k:
        parts = [f"bare {k['bare_events_per_s']:,}/s"]
        for key in (
            "koxpulse_1p_detectors_off",
            "koxpulse_1p_detectors_on",
            "koxpulse_2p_detectors_off",
            "koxpulse_2p_detectors_on",
        ):
            if key in k:
                parts.append(
                    f"{key.removeprefix('koxpulse_')} {k[key]['events_per_s']:,}/s "
                    f"({k[key]['ratio_vs_bare']}x)"
                )
        q = k.get("quix", {})
        if q.get("status") == "ok":
            parts.append(f"quix {q['events_per_s']:,.0f}/s")
        lines.append("kafka: " + ", ".join(parts))
    for lat in doc.get("latency", []):
        src = lat.get("alertmanager") if "p99_s" in lat.get("alertmanager", {}) else None
        src = src or lat["kox_alerts_topic"]
        lines.append(
            f"latency (lateness {lat['allowed_lateness_s']:g} s, {lat['rate_achieved']:,}/s): "
            f"p50 {_fmt(src['p50_s'])} s, p99 {_fmt(src['p99_s'])} s, "
            f"watermark delay p99 {_fmt(lat['watermark_delay']['p99_s'])} s"
        )
    for m in doc.get("memory", []):
        lines.append(
            f"memory: {m['distinct_users']:,} distinct users, {m['events']:,} events -> "
            f"peak RSS {m['peak_rss_mib']:,.0f} MiB"
        )
    for t in doc.get("targets", []):
        lines.append(
            f"target {t['target']}: {_fmt(t['measured'])} ({t['wanted']}) -> "
            + {True: "holds", False: "MISSED", None: "n/a"}[t["holds"]]
        )
    return lines

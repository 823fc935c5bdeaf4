"""Writes the benchmark's Markdown report and its plot of latency against offered load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.stats import growth_exponent, relative_change

PLOT = "latency-vs-offered-load.png"


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _plot(results, out / PLOT)
    (out / "report.md").write_text(render(results), encoding="utf-8")


def render(r: dict[str, Any]) -> str:
    ours, celery, raw, target = r["ours"], r["celery"], r["raw"], r["target"]
    speedup = ours["bundles_per_second"] / celery["bundles_per_second"]
    fraction = ours["messages_per_second"] / raw["per_second"]
    lines = [
        "# Lianban benchmark",
        "",
        f"Whole run: {r['total_seconds']} s. Load average before: {r['load_before']}. "
        "Every role in its own process; RabbitMQ quorum queues, persistent messages, "
        "publisher confirms; PostgreSQL; departments answer at once. See bench/README.md.",
        "",
        "## Ours, the Celery canvas, the raw broker",
        "",
        "| system | bundles/s (closed loop) | p50 ms | p95 ms | p99 ms | messages/s | load avg |",
        "|---|---:|---:|---:|---:|---:|---|",
        _system_row("Lianban", ours, ours["messages_per_second"]),
        _system_row("Celery canvas (2 prefork)", celery, None),
        f"| raw RabbitMQ ({raw['bytes']} B, quorum, confirms) | – | – | – | – "
        f"| {raw['per_second']:.0f} | {raw['load_average']} |",
        "",
        "| target | measured | met |",
        "|---|---:|:---:|",
        f"| ≥ 5× the Celery canvas throughput | {speedup:.2f}× | {_met(speedup >= 5)} |",
        f"| p99 intake→reply < 150 ms at {target['offered_per_second']:.0f} bundles/s offered "
        f"| {target['reply']['p99']:.0f} ms ({target['bundles_per_second']:.1f}/s achieved) "
        f"| {_met(target['reply']['p99'] < 150)} |",
        f"| router messages/s ≥ 0.6 of the raw broker | {fraction:.3f} | {_met(fraction >= 0.6)} |",
        *_growth_rows(r),
        "",
        "## Latency against offered load",
        "",
        f"![latency against offered load]({PLOT})",
        "",
        "| offered/s | achieved/s | p50 ms | p95 ms | p99 ms | intake p50 ms | unanswered "
        "| messages/s | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_offered_row(run) for run in [*r["sweep"], target]),
        "",
        "## Growth details",
        "",
        "(a) items per bundle (veteran discharge, closed loop):",
        "",
        "| items | bundles/s | router CPU ms/bundle | per item | p99 ms | load avg |",
        "|---:|---:|---:|---:|---:|---|",
        *(
            f"| {g['items']} | {g['bundles_per_second']:.1f} | "
            f"{g['router_cpu_ms_per_bundle']:.1f} | "
            f"{g['router_cpu_ms_per_bundle'] / g['items']:.1f} | {g['reply']['p99']:.0f} "
            f"| {g['load_average']} |"
            for g in r["growth_items"]
        ),
        "",
        *_filled_details(r["filled"]),
        "",
        *_waiting_details(r["waiting"]),
        "",
        *_isolation_details(r["isolation"]),
        "",
        "## Peak memory per process (VmHWM, MiB)",
        "",
        "| process | peak MiB |",
        "|---|---:|",
        *(f"| {name} | {mib:.0f} |" for name, mib in r["peak_rss_mib"].items()),
        *(f"| celery {name} | {mib:.0f} |" for name, mib in celery["peak_rss_mib"].items()),
        "",
    ]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _system_row(name: str, run: dict[str, Any], messages: float | None) -> str:
    reply = run["reply"]
    shown = f"{messages:.0f}" if messages is not None else "–"
    return (
        f"| {name} | {run['bundles_per_second']:.1f} | {reply['p50']:.0f} | {reply['p95']:.0f} "
        f"| {reply['p99']:.0f} | {shown} | {run['load_average']} |"
    )


def _offered_row(run: dict[str, Any]) -> str:
    reply = run["reply"]
    return (
        f"| {run['offered_per_second']:.1f} | {run['bundles_per_second']:.1f} "
        f"| {reply['p50']:.0f} | {reply['p95']:.0f} | {reply['p99']:.0f} "
        f"| {run['intake']['p50']:.0f} | {run['unanswered']} | {run['messages_per_second']:.0f} "
        f"| {run['load_average']} |"
    )


def _growth_rows(r: dict[str, Any]) -> list[str]:
    growth = r["growth_items"]
    exponent = growth_exponent(
        [g["items"] for g in growth], [g["router_cpu_ms_per_bundle"] for g in growth]
    )
    filled = r["filled"]
    closed_change = relative_change(
        filled["empty_closed"]["bundles_per_second"], filled["closed"]["bundles_per_second"]
    )
    intake_change = relative_change(
        r["isolation"]["runs"][0]["intake"]["p50"], filled["offered"]["intake"]["p50"]
    )
    waiting = r["waiting"]
    worst = max(_growth_mib(waiting).values())
    isolation = r["isolation"]
    p99_change = relative_change(isolation["before"]["p99"], isolation["after"]["p99"])
    return [
        f"| (a) cost per bundle, 1→{growth[-1]['items']} items: no worse than linear "
        f"| exponent {exponent:.2f} (1 = linear) | {_met(exponent <= 1.0)} |",
        f"| (b) {filled['bundles']:,} finished bundles stored: intake and correlation "
        f"≤ 10% slower | closed loop {closed_change:+.0%} bundles/s, intake p50 "
        f"{intake_change:+.0%} | {_met(closed_change >= -0.10 and intake_change <= 0.10)} |",
        f"| (c) {waiting['items_waiting']:,} items waiting: memory flat | largest growth "
        f"after the first quarter: {worst:+.1f} MiB | {_met(worst <= 10)} |",
        f"| (d) police answering in 2 s: other departments' p99 within 10% "
        f"| {isolation['before']['p99']:.0f} → {isolation['after']['p99']:.0f} ms "
        f"({p99_change:+.0%}) | {_met(abs(p99_change) <= 0.10)} |",
    ]


def _growth_mib(waiting: dict[str, Any]) -> dict[str, float]:
    """Per process: resident memory at the end minus after the first quarter."""
    return {
        name: waiting["rss_end_mib"][name] - waiting["rss_quarter_mib"][name]
        for name in waiting["rss_end_mib"]
    }


def _filled_details(filled: dict[str, Any]) -> list[str]:
    empty, full, offered = filled["empty_closed"], filled["closed"], filled["offered"]
    return [
        f"(b) {filled['bundles']:,} finished bundles filled in {filled['fill_seconds']} s:",
        "",
        "| database | closed bundles/s | p99 ms | intake p50 ms (closed) | load avg |",
        "|---|---:|---:|---:|---|",
        f"| empty | {empty['bundles_per_second']:.1f} | {empty['reply']['p99']:.0f} "
        f"| {empty['intake']['p50']:.0f} | {empty['load_average']} |",
        f"| filled | {full['bundles_per_second']:.1f} | {full['reply']['p99']:.0f} "
        f"| {full['intake']['p50']:.0f} | {full['load_average']} |",
        "",
        f"Offered {offered['offered_per_second']:.1f}/s on the filled database: intake p50 "
        f"{offered['intake']['p50']:.0f} ms, reply p99 {offered['reply']['p99']:.0f} ms "
        "(compare (d)'s first run, same rate, nearly empty database).",
        "",
        "Sequential scans while measuring on the filled database (pg_stat_user_tables): "
        + ", ".join(
            f"{table} {scans['scans']} ({scans['rows']:,} rows)"
            for table, scans in sorted(filled["sequential_scans"].items())
            if scans["scans"]
        )
        + ".",
    ]


def _waiting_details(waiting: dict[str, Any]) -> list[str]:
    growth = _growth_mib(waiting)
    return [
        f"(c) {waiting['bundles']:,} bundles posted in {waiting['seconds']} s; "
        f"{waiting['items_waiting']:,} items waiting at departments that answer nothing "
        f"(load avg {waiting['load_average']}):",
        "",
        "| process | RSS start MiB | after first quarter | end | max "
        "| growth after first quarter |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {waiting['rss_start_mib'][name]:.0f} "
            f"| {waiting['rss_quarter_mib'][name]:.0f} | {waiting['rss_end_mib'][name]:.0f} "
            f"| {waiting['rss_max_mib'][name]:.0f} | {growth[name]:+.1f} |"
            for name in waiting["rss_end_mib"]
        ),
    ]


def _isolation_details(isolation: dict[str, Any]) -> list[str]:
    before, after, police = isolation["before"], isolation["after"], isolation["police_after"]
    return [
        f"(d) offered {isolation['offered_per_second']}/s; latency from the router handing "
        f"{', '.join(isolation['departments'])} an item's decisive message to its approval:",
        "",
        "| police | items | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        f"| at once | {before['count']} | {before['p50']:.0f} | {before['p95']:.0f} "
        f"| {before['p99']:.0f} |",
        f"| in 2 s | {after['count']} | {after['p50']:.0f} | {after['p95']:.0f} "
        f"| {after['p99']:.0f} |",
        f"| (police's own items, in 2 s) | {police['count']} | {police['p50']:.0f} "
        f"| {police['p95']:.0f} | {police['p99']:.0f} |",
    ]


def _plot(results: dict[str, Any], path: Path) -> None:
    runs = sorted([*results["sweep"], results["target"]], key=lambda run: run["offered_per_second"])
    offered = [run["offered_per_second"] for run in runs]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-")):
        values = [run["reply"][key] for run in runs]
        axes.plot(offered, [math.nan if v is None else v for v in values], style, label=key)
    axes.axvline(results["ours"]["bundles_per_second"], color="grey", linestyle=":")
    axes.text(
        results["ours"]["bundles_per_second"],
        0.93,
        " closed-loop capacity",
        color="grey",
        transform=axes.get_xaxis_transform(),
    )
    axes.axhline(150, color="red", linestyle=":", label="150 ms target")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered load, newborn bundles/s")
    axes.set_ylabel("intake → reply, ms")
    axes.set_title("Lianban: latency against offered load")
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

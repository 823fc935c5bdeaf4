"""Writes the benchmark's Markdown report and its plot of latency against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.capacity import ACHIEVED_SHARE, P99_LIMIT_MS, sustained
from bench.stats import growth_exponent, relative_change
from bench.system import LOG_LEVEL

PLOT = "latency-vs-offered-load.png"
DEPARTMENT = "dept-"  # the department processes' names; every other is a router process
# Issue 19's targets: CPU ms per newborn bundle at 10/s offered, resident MiB.
CPU_LIMITS = {"lianban": 20.0, "machine": 50.0}
CPU_TARGETS = {name: f"≤ {limit:.0f} ms" for name, limit in CPU_LIMITS.items()}
DEPARTMENT_MIB = 70
ROUTER_MIB = 90


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _plot(results, out / PLOT)
    (out / "report.md").write_text(render(results), encoding="utf-8")


def render(r: dict[str, Any]) -> str:
    ours, celery, raw = r["ours"], r["celery"], r["raw"]
    fraction = ours["messages_per_second"] / raw["per_second"]
    lines = [
        "# Lianban benchmark",
        "",
        f"Whole run: {r['total_seconds']} s. Load average before: {r['load_before']}. "
        f"Router processes: {', '.join(r['router_processes'])}; one process per department. "
        f"Every process logs at `{LOG_LEVEL}` (deployments default to `info`, which costs "
        "more CPU: a line rendered and masked per step). "
        "RabbitMQ quorum queues, persistent messages, publisher confirms; PostgreSQL; "
        "departments answer at once. See bench/README.md.",
        "",
        *first_table(r),
        "",
        "## Capacity: offered rate stepped up (open loop)",
        "",
        f"Each step offers newborn bundles at a fixed rate for {r['scale']['capacity_seconds']:.0f}"
        " s and waits for every reply; a step is sustained when every bundle is answered, "
        f"at {ACHIEVED_SHARE:.0%} of the offered rate at least, with p99 intake→reply ≤ "
        f"{P99_LIMIT_MS:.0f} ms. Steps are ×{r['scale']['capacity_factor']} "
        "apart, from a rate derived from each system's closed loop, and stop at the first "
        "step not sustained.",
        "",
        f"![latency against offered load]({PLOT})",
        "",
        "| system | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | answered | sustained "
        "| load avg |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---|",
        *(_step_row("Lianban", step) for step in r["capacity"]["curve"]),
        *(_step_row("Celery canvas", step) for step in celery["curve"]),
        "",
        "## Closed loops (latency-bound)",
        "",
        f"{r['scale']['closed_clients']} clients each post a bundle and wait for its reply "
        "before posting the next: throughput here is bounded by latency (clients in flight "
        "÷ round trip), not by capacity. Messages/s are the router's broker messages.",
        "",
        "| system | bundles/s (closed loop) | p50 ms | p95 ms | p99 ms | messages/s | load avg |",
        "|---|---:|---:|---:|---:|---:|---|",
        _system_row("Lianban", ours, ours["messages_per_second"]),
        _system_row("Celery canvas (2 prefork)", celery, None),
        f"| raw RabbitMQ ({raw['bytes']} B, quorum, confirms) | – | – | – | – "
        f"| {raw['per_second']:.0f} | {raw['load_average']} |",
        "",
        f"Router messages/s in the closed loop as a fraction of the raw broker: {fraction:.3f}.",
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
        "## Memory per process (MiB)",
        "",
        "Resident (VmRSS) right after the closed loop, and peak (VmHWM) after the Lianban "
        "phases before (d) restarts police.",
        "",
        "| process | RSS after closed loop | peak | target |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {rss:.0f} | {r['peak_rss_mib'][name]:.0f} | {_rss_target(name)} |"
            for name, rss in r["rss_after_closed_mib"].items()
        ),
        *(f"| celery {name} | – | {mib:.0f} | |" for name, mib in celery["peak_rss_mib"].items()),
        "",
    ]
    return "\n".join(lines)


def first_table(r: dict[str, Any]) -> list[str]:
    """Issue 19's targets: the whole-machine CPU table at 10 bundles/s offered, then
    capacity, latency at half capacity, memory and growth, each measured against its
    target. Printed at the end of the run too."""
    cpu, half = r["cpu"], r["half_capacity"]
    ours, theirs = r["capacity_per_second"]["lianban"], r["capacity_per_second"]["celery"]
    ratio = r["capacity_ratio_to_celery"]
    after_closed = r["rss_after_closed_mib"]
    departments = {n: mib for n, mib in after_closed.items() if n.startswith(DEPARTMENT)}
    routers = {n: mib for n, mib in after_closed.items() if not n.startswith(DEPARTMENT)}
    worst_department = max(departments, key=departments.__getitem__)
    worst_router = max(routers, key=routers.__getitem__)
    cpu_rows = [
        f"| CPU ms per bundle: {name} | {ms:.1f} | {CPU_TARGETS.get(name, '')} "
        f"| {_met(ms <= CPU_LIMITS[name]) if name in CPU_LIMITS else ''} |"
        for name, ms in cpu["table"].items()
    ]
    return [
        "## Issue 19 targets",
        "",
        f"CPU: {cpu['bundles']} newborn bundles offered at {cpu['offered_per_second']:.0f}/s "
        f"for {cpu['seconds']:.0f} s ({cpu['unanswered']} unanswered, load avg "
        f"{cpu['load_average']}), CPU time of each process from /proc divided by bundles; "
        "`lianban` is the router processes and the department processes together, "
        "`machine` everything from /proc/stat.",
        "",
        "| figure | measured | target | met |",
        "|---|---:|---:|:---:|",
        *cpu_rows,
        f"| capacity, Lianban (bundles/s) | {_capacity(ours, r['capacity']['curve'])} "
        f"| ≥ the Celery canvas's | {_met(ours >= theirs)} |",
        f"| capacity, Celery canvas (bundles/s) | {_capacity(theirs, r['celery']['curve'])} | | |",
        f"| capacity ratio to Celery | {_ratio(ratio)} | ≥ 1× (next: 1.5×) "
        f"| {_met(ratio is not None and ratio >= 1)} |",
        f"| p99 intake→reply at half capacity ({half['offered_per_second']:.1f}/s offered, "
        f"{half['unanswered']} unanswered) | {half['reply']['p99']:.0f} ms | ≤ 150 ms "
        f"| {_met(half['unanswered'] == 0 and half['reply']['p99'] <= 150)} |",
        f"| RSS after the closed loop, largest department process ({worst_department}) "
        f"| {departments[worst_department]:.0f} MiB | ≤ {DEPARTMENT_MIB} MiB "
        f"| {_met(departments[worst_department] <= DEPARTMENT_MIB)} |",
        f"| RSS after the closed loop, largest router process ({worst_router}) "
        f"| {routers[worst_router]:.0f} MiB | ≤ {ROUTER_MIB} MiB "
        f"| {_met(routers[worst_router] <= ROUTER_MIB)} |",
        *_growth_rows(r),
    ]


def _rss_target(name: str) -> str:
    return f"≤ {DEPARTMENT_MIB if name.startswith(DEPARTMENT) else ROUTER_MIB}"


def _capacity(rate: float, curve: list[dict[str, Any]]) -> str:
    """The rate, marked as a lower bound when even the highest step was sustained."""
    if not rate:
        return f"< {curve[0]['offered_per_second']:.1f} (no step sustained)"
    return f"≥ {rate:.1f}" if sustained(curve[-1]) else f"{rate:.1f}"


def _ratio(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}×"


def _step_row(system: str, step: dict[str, Any]) -> str:
    reply = step["reply"]
    return (
        f"| {system} | {step['offered_per_second']:.1f} | {step['bundles_per_second']:.1f} "
        f"| {reply['p50']:.0f} | {reply['p95']:.0f} | {reply['p99']:.0f} "
        f"| {step['bundles'] - step['unanswered']}/{step['bundles']} "
        f"| {_met(sustained(step))} | {step['load_average']} |"
    )


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _system_row(name: str, run: dict[str, Any], messages: float | None) -> str:
    reply = run["reply"]
    shown = f"{messages:.0f}" if messages is not None else "–"
    return (
        f"| {name} | {run['bundles_per_second']:.1f} | {reply['p50']:.0f} | {reply['p95']:.0f} "
        f"| {reply['p99']:.0f} | {shown} | {run['load_average']} |"
    )


def _growth_rows(r: dict[str, Any]) -> list[str]:
    growth = r["growth_items"]
    exponent = growth_exponent(
        [g["items"] for g in growth], [g["router_cpu_ms_per_bundle"] for g in growth]
    )
    filled = r["filled"]
    # Slower as time per bundle in the closed loop, and as intake's p50 at half capacity.
    closed_slowdown = relative_change(
        1 / filled["empty_closed"]["bundles_per_second"], 1 / filled["closed"]["bundles_per_second"]
    )
    intake_slowdown = relative_change(
        filled["empty_offered"]["intake"]["p50"], filled["offered"]["intake"]["p50"]
    )
    waiting = r["waiting"]
    worst = max(_growth_mib(waiting).values())
    isolation = r["isolation"]
    p99_change = relative_change(isolation["before"]["p99"], isolation["after"]["p99"])
    return [
        f"| (a) router CPU per bundle, 1→{growth[-1]['items']} items "
        f"| exponent {exponent:.2f} (1 = linear) | no worse than linear "
        f"| {_met(exponent <= 1.0)} |",
        f"| (b) {filled['bundles']:,} finished bundles stored: intake and correlation, "
        f"against the empty database | closed loop {_slower(closed_slowdown)}, intake p50 "
        f"{_slower(intake_slowdown)} | ≤ 10% slower "
        f"| {_met(closed_slowdown <= 0.10 and intake_slowdown <= 0.10)} |",
        f"| (c) {waiting['items_waiting']:,} items waiting: largest RSS growth after the "
        f"first quarter | {worst:+.1f} MiB | flat (≤ 10 MiB) | {_met(worst <= 10)} |",
        f"| (d) police answering in 2 s: other departments' p99 "
        f"| {isolation['before']['p99']:.0f} → {isolation['after']['p99']:.0f} ms "
        f"({p99_change:+.0%}{_noise(isolation)}) | within 10% "
        f"| {_met(abs(p99_change) <= 0.10)} |",
    ]


def _noise(isolation: dict[str, Any]) -> str:
    """How far the windows with police answering at once differ from each other."""
    instant = [w["p99"] for w in isolation.get("windows", []) if w["phase"].endswith("i")]
    if len(instant) < 2:
        return ""
    return (
        f"; police at once, window against window: {relative_change(instant[0], instant[-1]):+.0%}"
    )


def _slower(change: float) -> str:
    return f"{change:.0%} slower" if change >= 0 else f"{-change:.0%} faster"


def _growth_mib(waiting: dict[str, Any]) -> dict[str, float]:
    """Per process: resident memory at the end minus after the first quarter."""
    return {
        name: waiting["rss_end_mib"][name] - waiting["rss_quarter_mib"][name]
        for name in waiting["rss_end_mib"]
    }


def _filled_details(filled: dict[str, Any]) -> list[str]:
    empty, full = filled["empty_closed"], filled["closed"]
    empty_offered, offered = filled["empty_offered"], filled["offered"]
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
        f"Offered {offered['offered_per_second']:.1f}/s (half capacity): intake p50 "
        f"{empty_offered['intake']['p50']:.0f} → {offered['intake']['p50']:.0f} ms, reply p99 "
        f"{empty_offered['reply']['p99']:.0f} → {offered['reply']['p99']:.0f} ms, nearly "
        "empty → filled database.",
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
    windows = isolation.get("windows", [])
    lines = [
        f"(d) offered {isolation['offered_per_second']}/s; latency from the router handing "
        f"{', '.join(isolation['departments'])} an item's decisive message to its approval, "
        f"police answering at once and in 2 s in alternating windows, each condition's "
        f"windows pooled:",
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
    if windows:
        lines += [
            "",
            "Each window in the order run (`i`: police at once, `s`: in 2 s):",
            "",
            "| window | items | p50 ms | p99 ms |",
            "|---|---:|---:|---:|",
            *(
                f"| {w['phase']} | {w['count']} | {w['p50']:.0f} | {w['p99']:.0f} |"
                for w in windows
            ),
        ]
    return lines


def _plot(results: dict[str, Any], path: Path) -> None:
    """Both capacity curves: p50 and p99 intake→reply against the offered rate."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for system, curve, color in (
        ("Lianban", results["capacity"]["curve"], "tab:blue"),
        ("Celery canvas", results["celery"]["curve"], "tab:orange"),
    ):
        offered = [step["offered_per_second"] for step in curve]
        for key, style in (("p50", "o--"), ("p99", "^-")):
            values = [step["reply"][key] for step in curve]
            axes.plot(offered, values, style, color=color, label=f"{system} {key}")
    axes.axhline(P99_LIMIT_MS, color="grey", linestyle=":", label="capacity: p99 ≤ 1 s")
    axes.axhline(150, color="red", linestyle=":", label="150 ms at half capacity")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered load, newborn bundles/s")
    axes.set_ylabel("intake → reply, ms")
    axes.set_title("Latency against offered load")
    axes.legend(fontsize="small")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

"""`python -m bench`: the whole benchmark, then bench/report.md and its plot.

Phases, in order, on this run's own database and vhost (see bench/README.md): warm-up,
CPU per bundle process by process at 10 bundles/s offered, Lianban's closed loop and the
memory after it, Lianban's capacity (offered rate stepped up), the latency at half that
capacity, growth (a) items per bundle, (d) isolation from a slow police department,
(b) 1,000,000 finished bundles already stored, (c) items waiting at slow departments;
then the Celery canvas peer (closed loop and capacity) and the raw broker.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import raw_broker
from bench.capacity import Step, find_capacity
from bench.cpu import NEWBORN_ITEMS, measure_cpu
from bench.environment import REDIS_URL, VENV_BIN, Process, children, fresh_services, memory_kib
from bench.fill import fill_finished_bundles
from bench.load import Platform, closed_loop
from bench.phases import Bench, MemorySampler, Run, load_average
from bench.report import first_table, write_report
from bench.stats import Latency
from bench.system import LianbanSystem, add_single_process_option, router_roles, running_system
from contracts import topology
from contracts.catalog import BundleType, default_catalog
from contracts.samples import sample_application

NEWBORN = "newborn"
# The largest bundle type: 11 items over five departments, listed so that every prefix
# keeps its prerequisites (growth (a) takes the first n).
GROWING = "veteran_discharge"
DEPARTMENTS = (
    "health",
    "police",
    "medical_insurance",
    "hrss",
    "veterans_affairs",
    "people_armed_forces",
)


@dataclass(frozen=True)
class Scale:
    """How long and how big each phase is; `make bench` must finish in about fifteen
    minutes on two cores (bench/README.md says how the sizes were chosen)."""

    cpu_rate: float = 10
    cpu_seconds: float = 20
    closed_clients: int = 16
    closed_seconds: float = 15
    # Capacity: steps of `capacity_seconds` from `capacity_start` × the closed-loop
    # figure, each `capacity_factor` times the last, at most `capacity_steps` of them.
    capacity_start: float = 0.6
    capacity_factor: float = 1.25
    capacity_seconds: float = 15
    capacity_steps: int = 7
    half_capacity_seconds: float = 15
    growth_sizes: tuple[int, ...] = (1, 2, 4, 8, 11)
    growth_seconds: float = 8
    isolation_seconds: float = 15
    isolation_rounds: int = 2
    filled_bundles: int = 1_000_000
    waiting_items: int = 100_000
    waiting_seconds: float = 45
    celery_seconds: float = 15
    raw_messages: int = 50_000


QUICK = Scale(
    cpu_seconds=3,
    closed_clients=4,
    closed_seconds=3,
    capacity_factor=2,
    capacity_seconds=3,
    capacity_steps=2,
    half_capacity_seconds=3,
    growth_sizes=(1, 2),
    growth_seconds=3,
    isolation_seconds=3,
    isolation_rounds=1,
    filled_bundles=1000,
    waiting_items=200,
    waiting_seconds=5,
    celery_seconds=3,
    raw_messages=2000,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the harness")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="report directory")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the router roles in the closed loop"
    )
    add_single_process_option(parser)
    args = parser.parse_args()
    roles = router_roles(args.single_process)
    scale = QUICK if args.quick else Scale()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"scale": asdict(scale), "load_before": load_average()}
    try:
        run(scale, roles, args.profile, results)
    except BaseException:
        # Keep what was measured: a broken run still says how far it got.
        partial = args.out / "results.partial.json"
        partial.write_text(json.dumps(results, indent=2, ensure_ascii=False))
        print(f"the run failed; what it measured is in {partial}")
        raise
    results["total_seconds"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    write_report(results, args.out)
    print("\n".join(first_table(results)))
    print(f"wrote {args.out / 'report.md'} in {results['total_seconds']} s")


def run(scale: Scale, roles: tuple[str, ...], profile: bool, results: dict[str, Any]) -> None:
    """Every phase, each adding its figures to `results` as it finishes."""
    catalog = default_catalog()
    newborn = catalog.bundle_types[NEWBORN]
    growing = catalog.bundle_types[GROWING]
    growing_items = [item.code for item in growing.items]
    with fresh_services() as services, tempfile.TemporaryDirectory() as workdir:
        results["router_processes"] = list(roles)
        with running_system(services, Path(workdir), roles, DEPARTMENTS) as (system, platform):
            bench = Bench(system, platform)
            log("warm-up")
            bench.closed("warm", newborn, NEWBORN_ITEMS, 4, 5)

            log(f"CPU per bundle at {scale.cpu_rate}/s offered")
            results["cpu"] = _cpu(system, platform, newborn, scale)
            results["lianban_cpu_ms_per_bundle"] = results["cpu"]["table"]["lianban"]
            results["machine_cpu_ms_per_bundle"] = results["cpu"]["table"]["machine"]

            log("closed loop (latency-bound)")
            spies = _profile(system, scale.closed_seconds) if profile else []
            closed = bench.closed(
                "closed", newborn, NEWBORN_ITEMS, scale.closed_clients, scale.closed_seconds
            )
            for spy in spies:
                spy.wait()
            results["ours"] = _run(closed)
            results["rss_after_closed_mib"] = system.processes.rss_mib()

            steps = itertools.count()

            def lianban_step(rate: float) -> Step:
                log(f"capacity: offered {rate:.1f}/s")
                measured = bench.offered(
                    f"cap{next(steps)}", newborn, NEWBORN_ITEMS, rate, scale.capacity_seconds
                )
                return _run(measured)

            capacity, curve = find_capacity(
                lianban_step,
                round(closed.bundles_per_second * scale.capacity_start, 1),
                scale.capacity_factor,
                scale.capacity_steps,
            )
            results["capacity"] = {"per_second": capacity, "curve": curve}
            # Isolation (d), the filled database (b) and the target below are
            # measured at half of it (of the lowest rate tried, if none held).
            half = (capacity or curve[0]["offered_per_second"]) / 2
            log(f"half capacity: offered {half:.1f}/s")
            results["half_capacity"] = _run(
                bench.offered("half", newborn, NEWBORN_ITEMS, half, scale.half_capacity_seconds)
            )

            growth = []
            for size in scale.growth_sizes:
                log(f"(a) {size} items per bundle")
                growth.append(
                    bench.closed(
                        f"a{size}",
                        growing,
                        growing_items[:size],
                        scale.closed_clients,
                        scale.growth_seconds,
                    )
                )
            results["growth_items"] = [
                {"items": size, **_run(r)}
                for size, r in zip(scale.growth_sizes, growth, strict=True)
            ]

            # Before (d) restarts police: every process has lived through the same load.
            results["peak_rss_mib"] = system.processes.peak_rss_mib()
            results["mean_message_bytes"] = system.mean_message_bytes()
            results["isolation"] = _isolation(bench, system, newborn, half, scale)

            results["filled"] = _filled(
                bench, system, newborn, closed, results["half_capacity"], half, scale
            )
            results["waiting"] = _waiting(bench, system, growing, growing_items, scale)
        log("celery canvas")
        results["celery"] = _celery(services.amqp_url, scale, Path(workdir))
        ours, theirs = results["capacity"]["per_second"], results["celery"]["capacity"]
        results["capacity_per_second"] = {"lianban": ours, "celery": theirs}
        results["capacity_ratio_to_celery"] = round(ours / theirs, 2) if theirs else None
        log("raw broker")
        raw = raw_broker.measure(
            services.amqp_url, scale.raw_messages, results.get("mean_message_bytes", 1024)
        )
        results["raw"] = {
            "messages": raw.messages,
            "bytes": raw.size,
            "seconds": round(raw.seconds, 2),
            "per_second": round(raw.per_second, 1),
            "load_average": load_average(),
        }


def _isolation(
    bench: Bench, system: LianbanSystem, newborn: BundleType, rate: float, scale: Scale
) -> dict[str, Any]:
    """(d): the same offered load in alternating windows, police answering at once, then
    in 2 s, twice over. Each condition's windows are pooled; the two windows with police
    answering at once, compared with each other, show the noise a change must stand out of
    (a single pair of 15 s windows moved p99 by -15 % and +93 % in two runs)."""
    others = ["health", "medical_insurance", "hrss"]
    instant: list[str] = []
    slow: list[str] = []
    runs = []
    for round_ in range(scale.isolation_rounds):
        for phases, answering in ((instant, ()), (slow, ("--delay", "2"))):
            phase = f"d{round_}{'s' if answering else 'i'}"
            log(f"(d) round {round_ + 1}, police answering {'in 2 s' if answering else 'at once'}")
            system.restart_department("police", *answering)
            system.wait_for_consumers([topology.department_queue("police")])
            runs.append(
                _run(bench.offered(phase, newborn, NEWBORN_ITEMS, rate, scale.isolation_seconds))
            )
            phases.append(phase)
    system.restart_department("police")
    system.wait_for_consumers([topology.department_queue("police")])
    return {
        "offered_per_second": round(rate, 1),
        "departments": others,
        "before": asdict(bench.department_latency(instant, others)),
        "after": asdict(bench.department_latency(slow, others)),
        "police_after": asdict(bench.department_latency(slow, ["police"])),
        "windows": [
            {"phase": phase, **asdict(bench.department_latency([phase], others))}
            for pair in zip(instant, slow, strict=True)
            for phase in pair
        ],
        "runs": runs,
    }


def _filled(
    bench: Bench,
    system: LianbanSystem,
    newborn: BundleType,
    empty: Run,
    empty_offered: dict[str, Any],
    rate: float,
    scale: Scale,
) -> dict[str, Any]:
    """(b): the same closed loop and offered load with a million finished bundles stored.
    The empty-database figures are the closed loop's and the half-capacity run's."""
    log(f"(b) filling {scale.filled_bundles} finished bundles")
    started = time.monotonic()
    fill_finished_bundles(system.engine, newborn, list(NEWBORN_ITEMS), scale.filled_bundles)
    fill_seconds = time.monotonic() - started
    log("(b) closed loop and offered load on the filled database")
    scans_before = system.sequential_scans()
    closed = bench.closed(
        "bclosed", newborn, NEWBORN_ITEMS, scale.closed_clients, scale.closed_seconds
    )
    offered = bench.offered("brate", newborn, NEWBORN_ITEMS, rate, scale.half_capacity_seconds)
    scans_after = system.sequential_scans()
    return {
        "bundles": scale.filled_bundles,
        "fill_seconds": round(fill_seconds, 1),
        "sequential_scans": {
            table: {
                "scans": after[0] - scans_before[table][0],
                "rows": after[1] - scans_before[table][1],
            }
            for table, after in scans_after.items()
        },
        "empty_closed": _run(empty),
        "empty_offered": empty_offered,
        "closed": _run(closed),
        "offered": _run(offered),
    }


def _waiting(
    bench: Bench, system: LianbanSystem, growing: BundleType, items: list[str], scale: Scale
) -> dict[str, Any]:
    """(c): every department files and answers nothing; bundles pour in until
    `waiting_items` items wait or the time is up; memory is sampled throughout."""
    for department in DEPARTMENTS:
        system.restart_department(department, "--later")
    system.wait_for_consumers([topology.department_queue(d) for d in DEPARTMENTS])
    per_bundle = len(items)
    bodies = bench.platform.applications(growing, items, scale.waiting_items // per_bundle, "c")
    log(f"(c) up to {len(bodies) * per_bundle} items waiting at departments")
    with MemorySampler(system) as sampler:
        timed, seconds = asyncio.run(
            closed_loop(bench.platform, bodies, 16, scale.waiting_seconds, wait_for_replies=False)
        )
        time.sleep(3)  # let the relay and the departments take the last ones
    samples = sampler.samples
    quarter = samples[len(samples) // 4]
    return {
        "bundles": len(timed),
        "items_waiting": bench.items_waiting("c"),
        "seconds": round(seconds, 1),
        "rss_start_mib": samples[0][1],
        "rss_quarter_mib": quarter[1],
        "rss_end_mib": samples[-1][1],
        "rss_max_mib": {name: max(sample[1][name] for sample in samples) for name in samples[0][1]},
        "load_average": load_average(),
    }


def _cpu(
    system: LianbanSystem, platform: Platform, newborn: BundleType, scale: Scale
) -> dict[str, Any]:
    """bench.cpu's table: CPU ms per bundle, process by process and the whole machine."""
    table, bundles, unanswered = measure_cpu(
        system, platform, newborn, scale.cpu_rate, scale.cpu_seconds
    )
    return {
        "offered_per_second": scale.cpu_rate,
        "seconds": scale.cpu_seconds,
        "bundles": bundles,
        "unanswered": unanswered,
        "table": table,
        "load_average": load_average(),
    }


def _celery(amqp_url: str, scale: Scale, workdir: Path) -> dict[str, Any]:
    """The canvas peer: warm-up, the same latency-bound closed loop as ours, then its
    capacity found the same way."""
    env = {**os.environ, "LIANBAN_BENCH_CELERY_BROKER": amqp_url}
    os.environ["LIANBAN_BENCH_CELERY_BROKER"] = amqp_url
    from bench import celery_peer  # the app reads its broker when imported

    newborn = default_catalog().bundle_types[NEWBORN]
    numbered = itertools.count()

    def applications(count: int) -> list[dict[str, Any]]:
        return [
            sample_application(newborn, f"celery-{n:09d}", list(NEWBORN_ITEMS), n)
            for n in (next(numbered) for _ in range(count))
        ]

    log_path = workdir / "celery-worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "bench.celery_peer",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--loglevel=warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    process = Process("celery", worker, log_path)

    def step(rate: float) -> Step:
        log(f"celery capacity: offered {rate:.1f}/s")
        latencies, seconds = celery_peer.open_loop(
            applications(max(1, round(rate * scale.capacity_seconds))), rate
        )
        process.check_alive()
        answered = [latency for latency in latencies if latency is not None]
        return {
            "offered_per_second": round(rate, 1),
            "bundles": len(latencies),
            "seconds": round(seconds, 2),
            "bundles_per_second": round(len(latencies) / seconds, 2),
            "reply": asdict(Latency.of(answered)),
            "unanswered": len(latencies) - len(answered),
            "load_average": load_average(),
        }

    try:
        celery_peer.closed_loop(applications(20), 4, 30)  # warm-up: the worker is ready
        log("celery closed loop (latency-bound)")
        latencies, seconds = celery_peer.closed_loop(
            applications(int(scale.celery_seconds * 200)),
            scale.closed_clients,
            scale.celery_seconds,
        )
        capacity, curve = find_capacity(
            step,
            round(len(latencies) / seconds * scale.capacity_start, 1),
            scale.capacity_factor,
            scale.capacity_steps,
        )
        process.check_alive()
        rss = {"worker": memory_kib(process.pid, "VmHWM") / 1024} | {
            f"prefork-{n}": memory_kib(child, "VmHWM") / 1024
            for n, child in enumerate(children(process.pid), start=1)
        }
    finally:
        process.stop()
        celery_peer.app.close()
    return {
        "bundles": len(latencies),
        "seconds": round(seconds, 2),
        "bundles_per_second": round(len(latencies) / seconds, 2),
        "reply": asdict(Latency.of(latencies)),
        "capacity": capacity,
        "curve": curve,
        "peak_rss_mib": rss,
        "redis": REDIS_URL,
        "load_average": load_average(),
    }


def _profile(system: LianbanSystem, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy on each router role for the closed loop: raw stacks (one line per stack, with
    its sample count) under var/bench-profiles/, kept out of the repository."""
    profiles = Path("var/bench-profiles")
    profiles.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--duration",
                str(int(seconds)),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(profiles / f"{role}.txt"),
                "--pid",
                str(system.processes.running[role].pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for role in system.roles
    ]


def _run(run: Run) -> dict[str, Any]:
    return {
        "name": run.name,
        "offered_per_second": None
        if run.offered_per_second is None
        else round(run.offered_per_second, 1),
        "bundles": run.bundles,
        "seconds": round(run.seconds, 2),
        "bundles_per_second": round(run.bundles_per_second, 2),
        "reply": asdict(run.reply),
        "intake": asdict(run.intake),
        "messages_per_second": round(run.messages_per_second, 1),
        "router_cpu_ms_per_bundle": round(run.router_cpu_ms_per_bundle, 1),
        "unanswered": run.unanswered,
        "load_average": run.load_average,
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load_average()})", flush=True)


if __name__ == "__main__":
    main()

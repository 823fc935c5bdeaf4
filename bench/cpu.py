"""CPU per bundle, process by process, at a fixed offered rate: `python -m bench.cpu`.

Every Lianban process, RabbitMQ (beam.smp and its helpers), PostgreSQL (the postmaster,
its live backends, and the ones it reaped), the load generator itself, and the whole
machine from /proc/stat. CPU time, not wall time: the figure holds on a busy machine far
better than a latency does, but compare runs only at similar load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.environment import cpu_seconds, fresh_services
from bench.load import Platform, open_loop
from bench.phases import load_average
from bench.system import (
    LianbanSystem,
    add_single_process_option,
    router_roles,
    running_system,
)
from contracts.catalog import BundleType, default_catalog

NEWBORN_ITEMS = (
    "birth_medical_certificate",
    "vaccination_certificate",
    "birth_registration",
    "medical_insurance_parent_insured",
    "social_security_card_application",
)
NEWBORN_DEPARTMENTS = ("health", "police", "medical_insurance", "hrss")
SERVICES = {"RabbitMQ": "beam.smp", "PostgreSQL": "postgres"}


def _pids(command: str) -> list[int]:
    found = subprocess.run(["pgrep", "-x", command], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _service_cpu_seconds(command: str) -> float:
    """Every process of a service, with the children each has reaped (a PostgreSQL
    backend that exited is in its postmaster's figure)."""
    total = 0.0
    for pid in _pids(command):
        with contextlib.suppress(FileNotFoundError):  # exited since the listing
            total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """All CPUs' non-idle time since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    processes: dict[str, float]
    services: dict[str, float]
    load_generator: float
    machine: float

    @classmethod
    def take(cls, system: LianbanSystem) -> CpuSnapshot:
        return cls(
            processes=system.processes.cpu_seconds(),
            services={name: _service_cpu_seconds(cmd) for name, cmd in SERVICES.items()},
            load_generator=cpu_seconds(os.getpid()),
            machine=machine_busy_seconds(),
        )


def cpu_table(before: CpuSnapshot, after: CpuSnapshot, bundles: int) -> dict[str, float]:
    """CPU ms per bundle: each Lianban process, `lianban` (their sum), each service, the
    load generator, and `machine` (everything, from /proc/stat)."""

    def per_bundle(seconds: float) -> float:
        return round(1000 * seconds / bundles, 2)

    table = {
        name: per_bundle(after.processes[name] - before.processes[name]) for name in after.processes
    }
    table["lianban"] = round(sum(table.values()), 2)
    for name in after.services:
        table[name] = per_bundle(after.services[name] - before.services[name])
    table["load generator"] = per_bundle(after.load_generator - before.load_generator)
    table["machine"] = per_bundle(after.machine - before.machine)
    return table


def measure_cpu(
    system: LianbanSystem,
    platform: Platform,
    newborn: BundleType,
    rate: float,
    seconds: float,
    phase: str = "cpu",
) -> tuple[dict[str, float], int, int]:
    """Offer newborn bundles at `rate` for `seconds`; the CPU table, the bundles posted
    and how many of them went unanswered."""
    bodies = platform.applications(newborn, NEWBORN_ITEMS, round(rate * seconds), phase)
    before = CpuSnapshot.take(system)
    timed, _ = asyncio.run(open_loop(platform, bodies, rate))
    after = CpuSnapshot.take(system)
    unanswered = sum(1 for t in timed if t.replied is None)
    return cpu_table(before, after, len(timed)), len(timed), unanswered


def print_table(table: dict[str, float], unit: str) -> None:
    width = max(map(len, table))
    for name, value in table.items():
        print(f"{name:<{width}}  {value:8.2f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10, help="bundles offered per second")
    parser.add_argument("--seconds", type=float, default=20, help="how long to offer them")
    add_single_process_option(parser)
    args = parser.parse_args()
    roles = router_roles(args.single_process)
    newborn = default_catalog().bundle_types["newborn"]
    with (
        fresh_services() as services,
        tempfile.TemporaryDirectory() as workdir,
        running_system(services, Path(workdir), roles, NEWBORN_DEPARTMENTS) as (system, platform),
    ):
        measure_cpu(system, platform, newborn, args.rate, 3, "warm")
        table, bundles, unanswered = measure_cpu(system, platform, newborn, args.rate, args.seconds)
        rss = system.processes.rss_mib()
    print(
        f"{bundles} newborn bundles at {args.rate}/s, {unanswered} unanswered, "
        f"load average {load_average()}; CPU per bundle:"
    )
    print_table(table, "ms")
    print("resident memory after the run:")
    print_table(rss, "MiB")


if __name__ == "__main__":
    main()

"""The benchmark's phases against one running Lianban, each returning its figures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from bench.environment import retrying
from bench.load import Platform, Timed, closed_loop, open_loop
from bench.stats import Latency
from bench.system import LianbanSystem
from contracts.catalog import BundleType

Driving = Coroutine[Any, Any, tuple[list[Timed], float]]
"""A load loop: what finished, and how long it took."""


@dataclass(frozen=True)
class Run:
    """One measured stretch of load: throughput, latency and what it cost."""

    name: str
    offered_per_second: float | None  # None: closed loop
    bundles: int
    seconds: float
    reply: Latency
    intake: Latency
    messages: int
    router_cpu_seconds: float
    unanswered: int
    load_average: str

    @property
    def bundles_per_second(self) -> float:
        return self.bundles / self.seconds

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def router_cpu_ms_per_bundle(self) -> float:
        return 1000 * self.router_cpu_seconds / self.bundles if self.bundles else float("nan")


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


class Bench:
    """Drives load at one running system and measures each phase."""

    def __init__(self, system: LianbanSystem, platform: Platform) -> None:
        self.system = system
        self.platform = platform

    def closed(
        self,
        name: str,
        bundle_type: BundleType,
        items: Sequence[str],
        clients: int,
        seconds: float,
    ) -> Run:
        bodies = self.platform.applications(bundle_type, items, int(seconds * 200) + 50, name)
        return self._measure(
            name, None, lambda: closed_loop(self.platform, bodies, clients, seconds)
        )

    def offered(
        self, name: str, bundle_type: BundleType, items: Sequence[str], rate: float, seconds: float
    ) -> Run:
        bodies = self.platform.applications(bundle_type, items, max(1, round(rate * seconds)), name)
        return self._measure(name, rate, lambda: open_loop(self.platform, bodies, rate))

    def _measure(self, name: str, rate: float | None, drive: Callable[[], Driving]) -> Run:
        before_messages = self.system.message_count()
        before_cpu = self.system.router_cpu_seconds()
        timed, seconds = asyncio.run(drive())
        after_cpu = self.system.router_cpu_seconds()
        self.system.processes.check_alive()
        return _run_of(
            name,
            rate,
            timed,
            seconds,
            (self.system.message_count() - before_messages).total,
            after_cpu - before_cpu,
        )

    def department_latency(self, phases: Sequence[str], departments: Sequence[str]) -> Latency:
        """From the router handing a department the item's decisive message (its dispatch,
        or the prerequisites' results after pre-review) to the approval being applied, over
        the bundles of `phases`."""
        query = text(
            """
            WITH phase_events AS (
                SELECT e.bundle_id, e.item, e.state, e.at
                FROM events e JOIN bundles b ON b.id = e.bundle_id
                WHERE b.project_no LIKE ANY(:prefixes) AND e.item IS NOT NULL
            ), asked AS (
                SELECT bundle_id, item, max(at) AS at FROM phase_events
                WHERE state IN ('dispatched', 'prerequisites_forwarded') GROUP BY 1, 2
            )
            SELECT extract(epoch FROM d.at - a.at)
            FROM phase_events d
            JOIN asked a USING (bundle_id, item)
            JOIN items i ON i.bundle_id = d.bundle_id AND i.code = d.item
            WHERE d.state = 'approved' AND i.department = ANY(:departments)
            """
        )

        def measured() -> Latency:
            with self.system.engine.connect() as connection:
                rows = connection.execute(
                    query,
                    {
                        "prefixes": [f"{phase}-%" for phase in phases],
                        "departments": list(departments),
                    },
                ).scalars()
                return Latency.of([float(value) for value in rows])

        return retrying(measured)

    def items_waiting(self, phase: str) -> int:
        return retrying(lambda: self._items_waiting(phase))

    def _items_waiting(self, phase: str) -> int:
        with self.system.engine.connect() as connection:
            waiting = connection.scalar(
                text(
                    "SELECT count(*) FROM items i JOIN bundles b ON b.id = i.bundle_id "
                    "WHERE b.project_no LIKE :prefix AND i.state = 'dispatched'"
                ),
                {"prefix": f"{phase}-%"},
            )
        return int(waiting or 0)


def _run_of(
    name: str, rate: float | None, timed: list[Timed], seconds: float, messages: int, cpu: float
) -> Run:
    replies = [t.reply_seconds for t in timed if t.reply_seconds is not None]
    return Run(
        name=name,
        offered_per_second=rate,
        bundles=len(timed),
        seconds=seconds,
        reply=Latency.of(replies),
        intake=Latency.of([t.intake_seconds for t in timed]),
        messages=messages,
        router_cpu_seconds=cpu,
        unanswered=len(timed) - len(replies),
        load_average=load_average(),
    )


@dataclass
class MemorySampler:
    """Samples every process's resident memory once a second on a thread of its own."""

    system: LianbanSystem
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        start = time.monotonic()

        def sample() -> None:
            while not self._stop.wait(1.0):
                self.samples.append((time.monotonic() - start, self.system.processes.rss_mib()))

        self.samples.append((0.0, self.system.processes.rss_mib()))
        self._thread = threading.Thread(target=sample, name="rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append((self.samples[-1][0] + 1, self.system.processes.rss_mib()))

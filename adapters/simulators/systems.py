"""Department systems on loopback: each installed adapter pointed at its own simulator.

Simulators are found through the `lianban.simulators` entry-point group, next to the
adapters' `lianban.adapters` group, so neither the demo nor the router imports a
department package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import entry_points
from typing import Any

from adapters.base import Adapter
from adapters.registry import installed_adapters
from adapters.simulators.base import DepartmentState, SimulatorServer
from contracts.catalog import Catalog

SIMULATOR_GROUP = "lianban.simulators"


def installed_simulators() -> dict[str, Callable[[DepartmentState], Any]]:
    return {entry.name: entry.load() for entry in entry_points(group=SIMULATOR_GROUP)}


@contextmanager
def simulated_department_systems(
    catalog: Catalog, decision_delay: float = 0.05
) -> Iterator[dict[str, tuple[Adapter, DepartmentState]]]:
    """Start a simulator for every installed adapter that ships one; yield the adapters
    pointed at them, with each simulator's state, by department."""
    simulators = installed_simulators()
    systems: dict[str, tuple[Adapter, DepartmentState]] = {}
    with ExitStack() as running:
        for department, adapter_class in sorted(installed_adapters().items()):
            if department not in simulators:
                continue
            adapter_class.check_declaration(catalog)
            state = DepartmentState(code=department, decision_delay=decision_delay)
            server = running.enter_context(SimulatorServer(simulators[department](state), state))
            systems[department] = (adapter_class(endpoint=server.url), state)
        yield systems

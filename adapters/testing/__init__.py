"""Tools for adapter authors: department simulators and the conformance suite."""

from adapters.simulators.base import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    DepartmentState,
    FaultMode,
    Filing,
    SimulatorServer,
    Verdict,
)

__all__ = [
    "BILLION_LAUGHS",
    "EXTERNAL_ENTITY",
    "DepartmentState",
    "FaultMode",
    "Filing",
    "SimulatorServer",
    "Verdict",
]

"""Bundles through the real department adapters and their simulators, over the broker.

Police and housing fund over SOAP, hrss and medical insurance over REST, each a real
loopback server; the other departments are simulated in process. Runs embedded and
against the machine's RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Running, new_project_no, running_stack

from adapters.simulators.base import DepartmentState, FaultMode
from adapters.simulators.systems import simulated_department_systems
from contracts.catalog import Catalog
from contracts.samples import full_selection, sample_application
from lianban.settings import Settings

BUNDLES = ("newborn", "citizen_after_death", "employee_hiring")


Systems = tuple[Running, dict[str, DepartmentState]]


@pytest.fixture
def stack(settings: Settings, catalog: Catalog) -> Iterator[Systems]:
    with simulated_department_systems(catalog) as systems:
        adapters = [adapter for adapter, _state in systems.values()]
        for adapter in adapters:
            adapter.breaker_reset_seconds = 0.5  # type: ignore[misc]  # probe soon in tests
        with running_stack(settings, catalog, adapters=adapters) as running:
            yield running, {department: state for department, (_a, state) in systems.items()}


def _filed_items(catalog: Catalog, code: str) -> dict[str, int]:
    """How many selected items of the bundle each real department should see filed."""
    bundle_type = catalog.bundle_types[code]
    counts: dict[str, int] = {}
    for item in full_selection(bundle_type):
        department = bundle_type.item(item).department
        counts[department] = counts.get(department, 0) + 1
    return counts


def test_bundles_complete_through_the_real_adapters(stack: Systems, catalog: Catalog) -> None:
    running, states = stack
    expected: dict[str, int] = {}
    replies = []
    for number, code in enumerate(BUNDLES, start=1):
        application = sample_application(
            catalog.bundle_types[code], new_project_no(), sequence=number
        )
        receipt = running.submit(application).json()
        replies.append(running.wait_for_reply(receipt["reply_url"]))
        for department, count in _filed_items(catalog, code).items():
            expected[department] = expected.get(department, 0) + count

    for reply in replies:
        assert reply["outcome"] == "all_approved", reply
    for department, state in states.items():
        assert len(state.filings) == expected.get(department, 0), department
        assert state.duplicate_filings() == {}
    assert sum(len(state.filings) for state in states.values()) >= 8


def test_a_department_down_for_a_while_loses_nothing_and_files_once(
    stack: Systems, catalog: Catalog
) -> None:
    running, states = stack
    states["police"].set_fault(FaultMode.DOWN, seconds=2.0)
    receipts = [
        running.submit(
            sample_application(catalog.bundle_types["newborn"], new_project_no(), sequence=n)
        ).json()
        for n in range(1, 6)
    ]
    replies = [running.wait_for_reply(receipt["reply_url"]) for receipt in receipts]

    assert all(reply["outcome"] == "all_approved" for reply in replies)
    assert len(states["police"].filings) == len(receipts)
    assert states["police"].duplicate_filings() == {}

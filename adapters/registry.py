"""Finds department adapters through the `lianban.adapters` entry-point group.

The router never imports a department package: an adapter distribution registers
`<department> = "package.module:AdapterClass"`, and the class is checked against the
catalog when it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from adapters.base import Adapter
from adapters.manual import manual_adapter
from adapters.simulated import DecisionLedger, Scenario, simulated_adapter
from contracts.catalog import Catalog
from contracts.errors import ConfigurationError
from runtime.outbound import OutboundPolicy, OutboundRefused, parse_hosts

ENTRY_POINT_GROUP = "lianban.adapters"


def installed_adapters() -> dict[str, type[Adapter]]:
    found: dict[str, type[Adapter]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        cls = entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigurationError(
                f"entry point {entry_point.name!r} ({entry_point.value}) is not an Adapter subclass"
            )
        found[entry_point.name] = cls
    return found


def adapter_for(
    department: str,
    catalog: Catalog,
    *,
    simulated: bool = False,
    manual: bool = False,
    scenario: Scenario | None = None,
    ledger: DecisionLedger | None = None,
) -> Adapter:
    """The installed adapter for `department`, or its simulator, or the manual work queue."""
    if simulated:
        return simulated_adapter(department, catalog, scenario, ledger)
    if manual:
        return manual_adapter(department, catalog, endpoint_of(department))
    installed = installed_adapters()
    cls = installed.get(department)
    if cls is None:
        known = ", ".join(sorted(installed)) or "none"
        raise ConfigurationError(
            f"no adapter is installed for department {department!r} (installed: {known}); "
            "run its simulator with --simulated, or the manual work queue with --manual"
        )
    cls.check_declaration(catalog)
    return cls(endpoint=endpoint_of(department))


def endpoint_of(department: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The department system's URL, from LIANBAN_ADAPTER_<DEPARTMENT>_URL, refused unless
    the outbound policy (LIANBAN_OUTBOUND_HOSTS, runtime.outbound) allows it."""
    env = os.environ if environ is None else environ
    variable = f"LIANBAN_ADAPTER_{department.upper()}_URL"
    url = env.get(variable)
    if url is not None:
        policy = OutboundPolicy(parse_hosts(env.get("LIANBAN_OUTBOUND_HOSTS", "")))
        try:
            policy.check(url)
        except OutboundRefused as refused:
            raise ConfigurationError(f"{variable} is refused: {refused}") from None
    return url


def simulate_every_department(
    catalog: Catalog,
    scenario: Scenario | None = None,
    ledger: DecisionLedger | None = None,
    *,
    except_for: Iterable[str] = (),
) -> list[Adapter]:
    """A simulator for each department that handles catalog items, sharing one ledger."""
    shared = ledger or DecisionLedger()
    skipped = set(except_for)
    return [
        simulated_adapter(code, catalog, scenario, shared)
        for code in catalog.serving_departments()
        if code not in skipped
    ]

"""Adapter declarations are checked against the catalog with messages that say how to fix them."""

from __future__ import annotations

import pytest
from pydantic import create_model

from adapters.base import Adapter
from adapters.decisions import Polled
from contracts.catalog import Catalog
from contracts.errors import ConfigurationError


def _adapter(**attributes: object) -> type[Adapter]:
    return type("PoliceAdapter", (Adapter,), attributes)


def test_a_correct_declaration_passes(catalog: Catalog) -> None:
    services = frozenset(sorted(catalog.services_of("police"))[:1])
    _adapter(department="police", services=services).check_declaration(catalog)
    form = create_model("BirthForm", newborn_name=(str, ...), registered_residence=(str, ...))
    _adapter(
        department="police", services=frozenset({"birth_household_registration"}), form_model=form
    ).check_declaration(catalog)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({}, "set `department = '<code>'`"),
        ({"department": "polic", "services": frozenset({"x"})}, "did you mean 'police'?"),
        ({"department": "police"}, "set `services = frozenset"),
        (
            {"department": "police", "services": frozenset({"birth_household_registratio"})},
            "did you mean 'birth_household_registration'?",
        ),
        (
            {
                "department": "police",
                "services": frozenset({"birth_household_registration"}),
                "form_model": create_model("BirthForm", newborn_nam=(str, ...)),
            },
            "form_model field(s) ['newborn_nam'] are not in the catalog's form for its "
            "services; add them to contracts/catalog/data/forms.yaml; did you mean "
            "'newborn_name'?",
        ),
        (
            {
                "department": "police",
                "services": frozenset({"birth_household_registration"}),
                "concurrency": 0,
            },
            "concurrency must be at least 1",
        ),
        (
            {
                "department": "police",
                "services": frozenset({"birth_household_registration"}),
                "decisions": Polled(),
            },
            "decisions = Polled(...) needs `async def poll(self, item, ctx)`",
        ),
        (
            {
                "department": "police",
                "services": frozenset({"birth_household_registration"}),
                "decisions": "callback",
            },
            "decisions must be adapters.Polled(PollSchedule(...)) or adapters.CalledBack()",
        ),
    ],
)
def test_a_wrong_declaration_says_how_to_fix_it(
    catalog: Catalog, attributes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match="PoliceAdapter") as raised:
        _adapter(**attributes).check_declaration(catalog)
    assert message in str(raised.value)

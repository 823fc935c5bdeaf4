"""The intake API fuzzed with schemathesis against its own OpenAPI document, over real
HTTP: valid and invalid requests for every operation. No answer may be a 5xx, every
invalid input must be refused with a 4xx, and every 4xx must name the problem.

`make test` runs a bounded number of examples per operation; `make fuzz` many more
(LIANBAN_FUZZ_EXAMPLES). Each run prints how many requests it sent, by status.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from harness import AUTH, serving_intake
from schemathesis import checks

from contracts.catalog import Catalog
from lianban.schemas import SCHEMA_DIR
from lianban.stack import Stack

FUZZ_EXAMPLES = int(os.environ.get("LIANBAN_FUZZ_EXAMPLES", "10"))
SENT: Counter[int] = Counter()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Iterator[Stack]:
    with serving_intake(tmp_path_factory.mktemp("fuzz"), catalog) as stack:
        yield stack
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(SENT.items()))
    print(f"\nfuzzed the intake API with {SENT.total()} requests ({statuses})")


def names_the_problem(ctx: Any, response: Any, case: Any) -> bool | None:
    """A refusal says what is wrong: a one-time notice's problems, or a detail."""
    SENT[response.status_code] += 1
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            body = None
        named = isinstance(body, dict) and (body.get("problems") or body.get("detail"))
        if not named:
            raise AssertionError(
                f"{response.status_code} does not name the problem: {response.text[:300]!r}"
            )
    return None


# The checked-in document, which a test keeps equal to what the app serves.
schema = schemathesis.openapi.from_path(SCHEMA_DIR / "openapi.json")
schema.config.generation.update(max_examples=FUZZ_EXAMPLES)


@schema.parametrize()
def test_the_intake_api_refuses_bad_input_by_name_and_never_fails(case: Any, served: Stack) -> None:
    case.call_and_validate(
        base_url=served.base_url,
        headers=AUTH,
        additional_checks=[names_the_problem],
        # Valid by the schema is not valid by the catalog, the checksums or the store (an
        # unknown bundle type, a random ID number, a material never uploaded): such a
        # request is refused, by name, which names_the_problem checks instead.
        # Starlette answers a 405 with the methods of one route, not of the whole path.
        excluded_checks=[checks.positive_data_acceptance, checks.allow_header_conformance],
    )

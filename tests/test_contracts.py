"""The contracts refuse what they do not define, and the router writes only what they allow."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

import contracts.api
import contracts.application
import contracts.catalog.model
import contracts.messages
from contracts.api import IntakeReceipt, ItemStatus, TimelineEntry, TimelineEvent
from contracts.catalog import Catalog
from contracts.messages import (
    Accepted,
    Certificate,
    CorrectionRequested,
    Decided,
    Failed,
    ItemOutcome,
    ItemResult,
    ItemState,
    Rejected,
)
from router.store.timeline import Actor, department_actor

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NAIVE = NOW.replace(tzinfo=None)
CERTIFICATE = Certificate(
    certificate_name="出生医学证明",
    certificate_number="Q410000001",
    issuer_name="郑州市妇幼保健院",
    issue_date=date(2026, 3, 1),
)


def _contract_models() -> list[type[BaseModel]]:
    modules = (contracts.api, contracts.application, contracts.catalog.model, contracts.messages)
    return [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
    ]


def _mentions(annotation: Any, kind: type) -> bool:
    return annotation is kind or any(_mentions(arg, kind) for arg in get_args(annotation))


@pytest.mark.parametrize("model", _contract_models(), ids=lambda model: model.__name__)
def test_every_contract_model_refuses_unknown_fields_and_never_changes(
    model: type[BaseModel],
) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True


@pytest.mark.parametrize("model", _contract_models(), ids=lambda model: model.__name__)
def test_every_contract_datetime_is_aware(model: type[BaseModel]) -> None:
    naive = [
        name for name, field in model.model_fields.items() if _mentions(field.annotation, datetime)
    ]
    assert naive == [], "use AwareDatetime"


# (result, its valid fields, a field it does not have, a value for it)
MISSPELT = [
    (Accepted, {}, "receipt_number", "R-1"),
    (Rejected, {"reason": "材料不全"}, "missing_materials", ("户口簿",)),
    (CorrectionRequested, {"reason": "请补正"}, "missing_material", ("户口簿",)),
    (Decided, {"approved": True}, "certificate", (CERTIFICATE,)),
    (Failed, {"error": "timeout"}, "retryable", True),
]


@pytest.mark.parametrize(
    ("result", "fields", "misspelt", "value"),
    MISSPELT,
    ids=[f"{result.__name__}.{misspelt}" for result, _, misspelt, _ in MISSPELT],
)
def test_a_misspelt_field_of_a_result_is_an_error_not_a_default(
    result: type[BaseModel], fields: dict[str, Any], misspelt: str, value: object
) -> None:
    result(**fields)
    with pytest.raises(ValidationError) as raised:
        result(**fields, **{misspelt: value})
    errors = [(error["type"], error["loc"]) for error in raised.value.errors()]
    assert errors == [("extra_forbidden", (misspelt,))]


def test_a_department_outcome_with_a_misspelt_field_is_refused() -> None:
    outcome = ItemOutcome(
        bundle_id=uuid.uuid4(),
        item="birth_medical_certificate",
        department="health",
        dispatch_id=uuid.uuid4(),
        occurred_at=NOW,
        result=Decided(approved=True, certificates=(CERTIFICATE,)),
    ).model_dump(mode="json")
    outcome["result"]["certificate"] = outcome["result"].pop("certificates")
    with pytest.raises(ValidationError) as raised:
        ItemOutcome.model_validate(outcome)
    errors = [(error["type"], error["loc"]) for error in raised.value.errors()]
    assert errors == [("extra_forbidden", ("result", "decided", "certificate"))]


def test_a_result_cannot_be_changed_after_it_was_made() -> None:
    decided = Decided(approved=False, reason="不符合条件")
    with pytest.raises(ValidationError, match="frozen"):
        decided.approved = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda at: ItemResult(
            item="a", name_zh="甲", department="health", state="approved", finished_at=at
        ),
        lambda at: IntakeReceipt(
            bundle_id=uuid.uuid4(),
            project_no="P-1",
            bundle_type="newborn",
            received_at=at,
            status_url="/v1/bundles/x",
            reply_url="/v1/bundles/x/reply",
            promised_working_days=21,
            items=(),
        ),
        lambda at: ItemStatus(
            item="a",
            name_zh="甲",
            department="health",
            state="accepted",
            reason=None,
            updated_at=at,
            handling_class="promised",
            promise_days=20,
        ),
        lambda at: TimelineEntry(at=at, item=None, state="received", detail=None, actor="router"),
    ],
    ids=[
        "ItemResult.finished_at",
        "IntakeReceipt.received_at",
        "ItemStatus.updated_at",
        "TimelineEntry.at",
    ],
)
def test_a_naive_datetime_is_refused_where_an_aware_one_is_required(make: Any) -> None:
    assert make(NOW)
    with pytest.raises(ValidationError) as raised:
        make(NAIVE)
    assert [error["type"] for error in raised.value.errors()] == ["timezone_aware"]


def _entry(actor: str) -> TimelineEntry:
    return TimelineEntry(at=NOW, item=None, state=ItemState.ACCEPTED, detail=None, actor=actor)


def test_every_actor_the_router_records_fits_the_timeline_contract(catalog: Catalog) -> None:
    actors = [*Actor, *(department_actor(code) for code in catalog.departments)]
    assert [_entry(actor).actor for actor in actors] == actors


@pytest.mark.parametrize("actor", ["department:", "department:Police", "staff", "platform "])
def test_an_actor_outside_the_vocabulary_breaks_the_timeline_contract(actor: str) -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        _entry(actor)


def test_a_timeline_step_names_either_an_item_state_or_an_event_never_both() -> None:
    # A stored step is read back as whichever vocabulary knows it: a name in both would
    # turn an event into a state change.
    assert not set(ItemState) & set(TimelineEvent)

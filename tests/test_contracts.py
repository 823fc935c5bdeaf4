"""The contracts refuse what they do not define, and the router writes only what they allow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.api import TimelineEntry, TimelineEvent
from contracts.catalog import Catalog
from contracts.messages import ItemState
from router.store.timeline import Actor, department_actor

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


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

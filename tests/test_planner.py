"""The planner releases items when their prerequisites are approved and cancels in cascade."""

from __future__ import annotations

from contracts.catalog import BundleType
from contracts.catalog.model import Item, Level, Prerequisite, Source
from contracts.messages import ItemState as S
from router.domain import planner


def _item(code: str, *needs: tuple[str, ...]) -> Item:
    return Item(
        code=code,
        service=code,
        name_zh=code,
        department="police",
        levels=(Level.COUNTY,),
        prerequisites=tuple(Prerequisite(any_of=alts, reason="测试") for alts in needs),
    )


# a ─┬─> c ──> d        (c needs a; d needs c)
# b ─┘  (c also needs one of b | b2)
BUNDLE = BundleType(
    code="sample",
    name_zh="样例",
    category="personal",
    lead_department="police",
    sources=(Source(list="henan-2023-personal", number=1),),
    items=(
        _item("a"),
        _item("b"),
        _item("b2"),
        _item("c", ("a",), ("b", "b2")),
        _item("d", ("c",)),
    ),
)


def test_roots_are_released_at_once() -> None:
    states = {"a": S.WAITING, "b": S.WAITING, "c": S.WAITING, "d": S.WAITING}
    assert planner.releasable(BUNDLE, states) == ["a", "b"]


def test_a_dependent_waits_for_every_prerequisite() -> None:
    states = {"a": S.APPROVED, "b": S.ACCEPTED, "c": S.WAITING, "d": S.WAITING}
    assert planner.releasable(BUNDLE, states) == []
    states["b"] = S.APPROVED
    assert planner.releasable(BUNDLE, states) == ["c"]


def test_the_selected_alternative_is_the_one_waited_for() -> None:
    states = {"a": S.APPROVED, "b2": S.APPROVED, "c": S.WAITING}
    assert planner.releasable(BUNDLE, states) == ["c"]


def test_a_lost_prerequisite_cancels_dependents_in_cascade() -> None:
    states = {"a": S.DENIED, "b": S.APPROVED, "c": S.WAITING, "d": S.WAITING}
    assert planner.blocked(BUNDLE, states) == {"c": "a", "d": "c"}


def test_nothing_is_blocked_while_a_prerequisite_is_pending() -> None:
    states = {"a": S.ACCEPTED, "b": S.REJECTED, "b2": S.DISPATCHED, "c": S.WAITING}
    assert planner.blocked(BUNDLE, states) == {}
    assert planner.releasable(BUNDLE, states) == []


def test_a_prerequisite_an_earlier_result_stands_for_is_met_without_being_selected() -> None:
    """单独申请: c applied for alone, a and one of b | b2 cited as earlier results."""
    alone = {"c": S.WAITING}
    assert planner.releasable(BUNDLE, alone) == []
    assert planner.releasable(BUNDLE, alone, satisfied={"a"}) == []  # b | b2 still open
    assert planner.releasable(BUNDLE, alone, satisfied={"a", "b2"}) == ["c"]
    # A cited result stands beside a selected alternative that is still undecided.
    with_b = {"b": S.DISPATCHED, "c": S.WAITING}
    assert planner.releasable(BUNDLE, with_b, satisfied={"a", "b2"}) == ["c"]
    assert planner.blocked(BUNDLE, {"c": S.WAITING}) == {}

"""The adapter SDK's one face: what `adapters` exports is pinned, so a rename or a removal
is a decision, seen in review, never an accident (httpx's test_exported_members)."""

from __future__ import annotations

import adapters

EXPORTED = {
    "Accepted",
    "Adapter",
    "AdapterContext",
    "BadAnswerError",
    "CalledBack",
    "Certificate",
    "CorrectionRequested",
    "Decided",
    "Failed",
    "FatalDepartmentError",
    "FilingWithdrawn",
    "ItemCancel",
    "ItemDispatch",
    "ItemPoll",
    "ItemSupplement",
    "MaterialRef",
    "OutcomeResult",
    "Pending",
    "PollPhase",
    "PollSchedule",
    "Polled",
    "PrerequisiteResult",
    "Rejected",
    "RetryPolicy",
    "RetryableError",
    "SoapFilingAdapter",
    "SupplementPurpose",
    "ToleratedGap",
}


def test_the_sdk_exports_exactly_its_documented_names() -> None:
    assert set(adapters.__all__) == EXPORTED


def test_every_exported_name_resolves() -> None:
    missing = [name for name in adapters.__all__ if not hasattr(adapters, name)]
    assert missing == []

"""The SDK for department adapters: everything an adapter author imports, from one place.

    from adapters import Adapter, AdapterContext, Accepted, Decided, ItemDispatch, ...

An adapter is a declaration plus one `async def handle(item, ctx)` (see `Adapter`);
`lianban adapter new <department>` scaffolds one with its simulator and tests, and
`adapters.testing.AdapterConformance` is the suite it must pass. Which error to raise:

    RetryableError ....... the department is busy or timed out: call again later
    FatalDepartmentError . repeating cannot help (our request is wrong): the item fails
    BadAnswerError ....... the department answered garbage: the item fails
    FilingWithdrawn ...... the department reports the filing withdrawn (撤回): not a fault

Business answers (不予受理, 补齐补正, denial) are results, not errors: return Rejected,
CorrectionRequested or Decided(approved=False, reason=...). A department that decides
later gets `Pending` and a `decisions = Polled(PollSchedule(...))` or `CalledBack()`.

`SoapFilingAdapter` is imported on first use: it brings zeep, which an adapter that
speaks only HTTP (and its process) does without.
"""

from typing import TYPE_CHECKING, Any

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.decisions import CalledBack, Polled
from adapters.resilience import RetryPolicy
from contracts.application import MaterialRef
from contracts.errors import BadAnswerError, FatalDepartmentError, FilingWithdrawn, RetryableError
from contracts.messages import (
    Accepted,
    Certificate,
    CorrectionRequested,
    Decided,
    Failed,
    ItemCancel,
    ItemDispatch,
    ItemPoll,
    ItemSupplement,
    OutcomeResult,
    Pending,
    PrerequisiteResult,
    Rejected,
    SupplementPurpose,
    ToleratedGap,
)
from contracts.polling import PollPhase, PollSchedule

if TYPE_CHECKING:
    from adapters.soap_filing import SoapFilingAdapter

__all__ = [
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
]


def __getattr__(name: str) -> Any:
    if name == "SoapFilingAdapter":
        from adapters.soap_filing import SoapFilingAdapter

        return SoapFilingAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

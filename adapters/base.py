"""What a department adapter is: a declaration plus one `async def handle`.

An adapter class names its department, the catalog services it handles, the model the
merged form must fit, its retry policy, timeout, concurrency and rate limit. The
declaration is checked against the catalog at registration, before any connection is
opened, with messages that say how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import ClassVar

from pydantic import BaseModel

from adapters.context import AdapterContext
from adapters.decisions import CalledBack, DecisionReporting, Polled
from adapters.resilience import RetryPolicy
from contracts.catalog import Catalog
from contracts.errors import ConfigurationError, FatalDepartmentError
from contracts.messages import (
    DecisionPush,
    ItemCancel,
    ItemDispatch,
    ItemPoll,
    ItemSupplement,
    OutcomeResult,
)


class Adapter:
    """Base class of every department adapter.

    Subclasses set `department` and `services`, and implement `handle`, which returns
    the item's outcome: accepted, rejected (with reason), correction requested, decided
    (approved or denied, with certificates) or failed. Exceptions are classified by
    `adapters.errors`: transient ones are retried (the whole `handle`, so it must file
    under `ctx.idempotency_key`), the rest fail the item.
    """

    department: ClassVar[str]
    services: ClassVar[Iterable[str]]
    """Catalog service codes handled; a mapping service → operation name also fits."""
    form_model: ClassVar[type[BaseModel] | None] = None
    """The fields of the merged form this department needs; a form that does not fit is
    rejected back to the applicant with the reasons."""
    retry: ClassVar[RetryPolicy] = RetryPolicy()
    timeout_seconds: ClassVar[float] = 30.0
    concurrency: ClassVar[int] = 64
    rate_limit_per_second: ClassVar[float | None] = None
    breaker_threshold: ClassVar[int] = 5
    breaker_reset_seconds: ClassVar[float] = 30.0
    decisions: ClassVar[DecisionReporting | None] = None
    """How a department that decides later reports it (`Polled` or `CalledBack`); None
    for one that always decides within the call."""
    area: str | None = None
    """The GB/T 2260 prefix this deployment serves (`lianban adapter <d> --area 4101`),
    reading that area's queue; None, the whole province. The router routes by the same
    declaration (LIANBAN_ADAPTER_AREAS, router.domain.routing)."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult | None:
        """File the item and return its outcome, or None when the department will answer
        later by calling back (the answer then reaches the router on its own path)."""
        raise NotImplementedError

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult | None:
        """Add to an existing filing: the prerequisites' results of a pre-reviewed item
        (容缺预审), or materials resubmitted on a correction request (补齐补正); then return
        the item's outcome as `handle` does. Never file a second time. A dispatch with
        `pre_review` set should be answered with Accepted once pre-reviewed, and decided
        only after its supplement."""
        raise FatalDepartmentError(f"{self.department} offers no way to supplement a filing")

    async def poll(self, item: ItemPoll, ctx: AdapterContext) -> OutcomeResult:
        """Ask the department where a filing stands; return Pending while it has not
        decided, else Decided, Rejected or Failed (its own failure: the router then
        withdraws the filing). Required with `decisions = Polled(...)`."""
        raise FatalDepartmentError(f"{self.department} offers no way to poll a filing")

    def read_decision(self, body: bytes) -> DecisionPush:
        """The decision a department pushed to the adapter's endpoint (`decisions =
        CalledBack()`); override to read the department's own format."""
        return DecisionPush.model_validate_json(body)

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        """Withdraw a filing at the department (撤回). Override where the department
        has a cancel operation; a department without one is told nothing, and says so."""
        raise FatalDepartmentError(f"{self.department} offers no way to withdraw a filing")

    @classmethod
    def check_declaration(cls, catalog: Catalog) -> None:
        """Raise ConfigurationError, saying how to fix it, if the declaration is wrong."""
        name = cls.__qualname__
        department = getattr(cls, "department", None)
        if not isinstance(department, str):
            raise ConfigurationError(f"{name}: set `department = '<code>'` on the class")
        if department not in catalog.departments:
            raise ConfigurationError(
                f"{name}: unknown department {department!r}"
                + _did_you_mean(department, catalog.departments)
            )
        services = getattr(cls, "services", None)
        if not services:
            raise ConfigurationError(f"{name}: set `services = frozenset({{...}})` on the class")
        offered = catalog.services_of(department)
        for service in sorted(services):
            if service not in offered:
                raise ConfigurationError(
                    f"{name}: department {department!r} has no catalog service {service!r}"
                    + _did_you_mean(service, offered)
                )
        if cls.form_model is not None and not (
            isinstance(cls.form_model, type) and issubclass(cls.form_model, BaseModel)
        ):
            raise ConfigurationError(f"{name}: form_model must be a pydantic BaseModel subclass")
        if cls.form_model is not None:
            _check_form_model(name, cls.form_model, frozenset(services), catalog)
        if not isinstance(cls.retry, RetryPolicy):
            raise ConfigurationError(f"{name}: retry must be an adapters.RetryPolicy")
        if cls.decisions is not None and not isinstance(cls.decisions, Polled | CalledBack):
            raise ConfigurationError(
                f"{name}: decisions must be adapters.Polled(PollSchedule(...)) or "
                "adapters.CalledBack()"
            )
        if isinstance(cls.decisions, Polled) and cls.poll is Adapter.poll:
            raise ConfigurationError(
                f"{name}: decisions = Polled(...) needs `async def poll(self, item, ctx)`"
            )
        if cls.concurrency < 1:
            raise ConfigurationError(f"{name}: concurrency must be at least 1")
        if cls.timeout_seconds <= 0:
            raise ConfigurationError(f"{name}: timeout_seconds must be positive")
        if cls.rate_limit_per_second is not None and cls.rate_limit_per_second <= 0:
            raise ConfigurationError(f"{name}: rate_limit_per_second must be positive or None")


def _check_form_model(
    name: str, form_model: type[BaseModel], services: frozenset[str], catalog: Catalog
) -> None:
    """A department's form fields come from the catalog's one form (一表申请): a field the
    catalog never sends its services would fail every dispatch."""
    received = {
        field
        for bundle_type in catalog.bundle_types.values()
        for item in bundle_type.items
        if item.service in services
        for field in item.form_fields
    }
    declared = {field.alias or key for key, field in form_model.model_fields.items()}
    missing = sorted(declared - received)
    if missing:
        raise ConfigurationError(
            f"{name}: form_model field(s) {missing} are not in the catalog's form for its "
            "services; add them to contracts/catalog/data/forms.yaml"
            + _did_you_mean(missing[0], received)
        )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

"""Runs one dispatch through an adapter with every protection the SDK promises.

Shared by the worker (behind RabbitMQ) and the conformance suite (directly), so the
suite tests exactly what production runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

import structlog
from pydantic import ValidationError

from adapters.base import Adapter
from adapters.context import AdapterContext, DepartmentClients, Reporter
from adapters.errors import classify, describe
from adapters.resilience import RateLimiter, call_department
from contracts.errors import Action, DepartmentUnavailable, FatalDepartmentError, FilingWithdrawn
from contracts.messages import (
    CancelRefused,
    Decided,
    DepartmentRequest,
    Failed,
    ItemCancel,
    ItemDispatch,
    ItemPoll,
    ItemSupplement,
    OutcomeResult,
    Rejected,
)
from contracts.personal_data import mask_text
from runtime import clock
from runtime.breakers import BREAKERS, CircuitBreaker
from runtime.storage import MaterialStore

log = structlog.get_logger(__name__)
T = TypeVar("T")


class AdapterRunner:
    """One adapter's pooled clients, breaker and rate limiter, and the call path."""

    def __init__(self, adapter: Adapter, materials: MaterialStore | None = None) -> None:
        self.adapter = adapter
        self.clients = DepartmentClients(
            adapter.endpoint, adapter.timeout_seconds, adapter.concurrency, materials
        )
        self.breaker = CircuitBreaker(
            f"{adapter.department}:{adapter.endpoint}",
            threshold=adapter.breaker_threshold,
            reset_seconds=adapter.breaker_reset_seconds,
        )
        BREAKERS.track(adapter.department, self.breaker)  # reported on the process's /metrics
        rate = adapter.rate_limit_per_second
        self.limiter = RateLimiter(rate, burst=max(1, int(rate))) if rate else None

    async def run(
        self, request: DepartmentRequest, delivery: int, report: Reporter
    ) -> OutcomeResult | None:
        """The item's outcome (None: the department calls back). A department that stays
        unavailable through this delivery's attempts raises DepartmentUnavailable (the
        worker retries later, or parks the message once the item's time is up); every
        other department failure becomes `Failed`."""
        adapter = self.adapter
        ctx = self._context(request, delivery, report)
        if isinstance(request, ItemPoll):
            return await self._poll(request, ctx)
        if delivery > adapter.retry.max_deliveries:
            ctx.log.error("dispatch.gave_up")
            return Failed(error=f"gave up after {delivery - 1} deliveries")
        call: Callable[[], Awaitable[OutcomeResult | None]]
        if isinstance(request, ItemSupplement):
            call = partial(adapter.supplement, request, ctx)
        else:
            if adapter.form_model is not None:
                try:
                    adapter.form_model.model_validate(request.form)
                except ValidationError as error:
                    return Rejected(reason=_form_problems(error))
            call = partial(adapter.handle, request, ctx)
        try:
            result = await self._protected(call, request.respond_by)
        except FilingWithdrawn as withdrawn:
            # Ordinarily the applicant's withdrawal, which the router has recorded (the
            # outcome is then stale); one the department made alone still ends the item.
            ctx.log.info("department.filing_withdrawn", error=describe(withdrawn))
            return Failed(error=describe(withdrawn))
        except Exception as error:
            self._retry_later_if_unavailable(error, ctx)
            ctx.log.error("department.failed", error=describe(error))
            return Failed(error=describe(error))
        if isinstance(request, ItemDispatch) and request.pre_review and isinstance(result, Decided):
            # The supplement reached the department while this call still polled: the
            # supplement's own call reports the decision, so this one reports none.
            return None
        return result

    async def _poll(self, poll: ItemPoll, ctx: AdapterContext) -> OutcomeResult | None:
        """The department's answer to a poll; None for a poll that got none (the
        department unreachable, its answer unreadable): a missed poll, which the router's
        schedule repeats. Only the department's own answer may fail the item."""
        try:
            return await self._protected(lambda: self.adapter.poll(poll, ctx), poll.respond_by)
        except Exception as error:
            ctx.log.warning("department.poll_missed", error=describe(error))
            return None

    async def cancel(
        self, cancel: ItemCancel, delivery: int, report: Reporter | None = None
    ) -> bool:
        """Withdraw a filing with the same protections as filing; False if it could not be
        (DepartmentUnavailable while the department is unavailable, as for filing). A
        department refusing (it has decided already) is its answer, not a fault: it goes
        to `report` as CancelRefused, so the router reports the decision that stands."""

        async def nothing_to_report(result: OutcomeResult) -> None:
            ctx.log.warning("cancel.unexpected_report", status=result.status)

        ctx = self._context(cancel, delivery, nothing_to_report)
        try:
            await self._protected(lambda: self.adapter.cancel(cancel, ctx), respond_by=None)
        except Exception as error:
            self._retry_later_if_unavailable(error, ctx)
            refused = isinstance(error, FatalDepartmentError)
            log = ctx.log.warning if refused else ctx.log.error
            log("department.cancel_failed", error=describe(error))
            if refused and report is not None:
                await report(CancelRefused(reason=mask_text(describe(error))[:500]))
            return False
        ctx.log.info("department.cancelled")
        return True

    @staticmethod
    def _retry_later_if_unavailable(error: Exception, ctx: AdapterContext) -> None:
        if classify(error) is Action.RETRY:
            ctx.log.warning("department.unavailable", error=describe(error))
            raise DepartmentUnavailable(describe(error)) from error

    def _context(
        self,
        message: DepartmentRequest | ItemCancel,
        delivery: int,
        report: Reporter,
    ) -> AdapterContext:
        bound = log.bind(
            bundle_id=str(message.bundle_id),
            item=message.item,
            department=message.department,
            message_id=str(message.message_id),
            delivery=delivery,
        )
        return AdapterContext(
            idempotency_key=message.idempotency_key,
            delivery=delivery,
            report=report,
            clients=self.clients,
            log=bound,
        )

    async def _protected(self, call: Callable[[], Awaitable[T]], respond_by: datetime | None) -> T:
        budget = self.adapter.retry.budget_seconds
        if respond_by is not None:  # never retry past the item's deadline
            budget = max(0.0, min(budget, (respond_by - clock.now()).total_seconds()))
        return await call_department(
            call,
            policy=self.adapter.retry,
            budget_seconds=budget,
            # Requests time out by themselves (timeout_seconds); an attempt may also wait
            # for a decision, so it is capped only by the whole budget.
            attempt_timeout_seconds=self.adapter.retry.budget_seconds,
            breaker=self.breaker,
            limiter=self.limiter,
        )

    async def aclose(self) -> None:
        BREAKERS.untrack(self.breaker)
        await self.clients.aclose()


def _form_problems(error: ValidationError) -> str:
    fields = ", ".join(".".join(str(part) for part in detail["loc"]) for detail in error.errors())
    return f"申请表缺少或填写有误的内容：{fields}"

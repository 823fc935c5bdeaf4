"""A department that answers at once (or after a fixed delay), run as a process of its own:

    python -m bench.department <department> [--delay SECONDS | --later]

It goes through the same `AdapterProcess` and `AdapterWorker` as `lianban adapter`, so
everything but the department's own work is measured. It keeps nothing per item, so its
memory says something about the worker, not about a test double.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date

from adapters.base import Adapter
from adapters.context import AdapterContext
from contracts.catalog import Catalog, load_catalog
from contracts.messages import (
    Accepted,
    Certificate,
    Decided,
    ItemCancel,
    ItemDispatch,
    ItemSupplement,
    OutcomeResult,
)


class InstantDepartment(Adapter):
    """Approves every item after `delay_seconds`; a pre-review filing is accepted and
    decided when its supplement brings the prerequisites' results. With `answers_later`
    it files and answers nothing, as a department that will call back days later: the
    item then waits at the department, not in any process."""

    delay_seconds: float = 0.0
    answers_later: bool = False

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult | None:
        receipt = f"BENCH-{item.bundle_id.hex[:12]}-{item.item}"
        if self.answers_later:
            return None
        if item.pre_review:
            return Accepted(receipt_no=receipt)
        return await self._approve(item, receipt)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        return await self._approve(item, item.receipt_no or "")

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        return None

    async def _approve(self, item: ItemDispatch | ItemSupplement, receipt: str) -> OutcomeResult:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        certificate = Certificate(
            certificate_name=item.item_name_zh,
            certificate_number=receipt,
            issuer_name="基准测试部门",
            issue_date=date.today(),
        )
        return Decided(approved=True, certificates=(certificate,))


def instant_department(
    department: str, catalog: Catalog, delay_seconds: float = 0.0, answers_later: bool = False
) -> Adapter:
    cls: type[InstantDepartment] = type(
        f"Instant_{department}",
        (InstantDepartment,),
        {
            "department": department,
            "services": catalog.services_of(department),
            "delay_seconds": delay_seconds,
            "answers_later": answers_later,
        },
    )
    cls.check_declaration(catalog)
    return cls()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("department")
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    answer.add_argument("--later", action="store_true", help="file, and answer nothing")
    args = parser.parse_args()
    # Read for the adapter's declaration, then dropped (default_catalog's stays cached),
    # before the adapter process's modules are imported, as `lianban adapter` does.
    catalog = load_catalog()
    adapter = instant_department(args.department, catalog, args.delay, args.later)
    from lianban.adapter_process import AdapterProcess
    from lianban.settings import Settings
    from runtime.logs import configure_logging
    from runtime.tracing import configure_tracing

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    # As `lianban adapter` does: its spans are recorded (and exported if asked) in
    # production, so the bench pays for them too.
    configure_tracing(f"lianban-adapter-{args.department}", settings.traces_exporter)
    process = AdapterProcess(settings, catalog.departments, [adapter])
    del catalog
    process.start()
    process.wait()


if __name__ == "__main__":
    main()

"""What a department adapter is: a declaration plus one `async def handle`.

An adapter class names its department and the catalog services it handles; the
declaration is checked against the catalog at registration, before any connection is
opened, with messages that say how to fix it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog

from contracts.catalog import Catalog
from contracts.errors import ConfigurationError
from contracts.messages import ItemDispatch, OutcomeResult

if TYPE_CHECKING:
    from collections.abc import Awaitable


class Reporter(Protocol):
    def __call__(self, result: OutcomeResult) -> Awaitable[None]: ...


@dataclass
class AdapterContext:
    """What a handler may use besides the dispatch itself."""

    report: Reporter
    """Send an interim outcome (e.g. accepted) before the handler returns the final one."""
    log: Any = field(default_factory=lambda: structlog.get_logger("adapter"))


class Adapter:
    """Base class of every department adapter.

    Subclasses set `department` and `services`, and implement `handle`, which returns
    the item's outcome: accepted, rejected (with reason), correction requested, decided
    (approved or denied, with certificates) or failed.
    """

    department: ClassVar[str]
    services: ClassVar[frozenset[str]]
    concurrency: ClassVar[int] = 64

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        raise NotImplementedError

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
        if cls.concurrency < 1:
            raise ConfigurationError(f"{name}: concurrency must be at least 1")


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

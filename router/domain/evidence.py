"""What intake verified for one bundle, stored with it (`bundles.evidence`): the cited
licences fetched into the material store, and the earlier results standing for
prerequisites applied for elsewhere (router.domain.citations verifies them).

`Evidence.verified_types` is what the materials check takes: the licence types that
stand in for uploads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from contracts.application import MaterialRef
from contracts.messages import PrerequisiteResult


class FetchedLicence(BaseModel):
    """A verified licence, its file now in the material store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type_code: str
    number: str
    material: MaterialRef


class Evidence(BaseModel):
    """What intake verified for one bundle (stored with it: `bundles.evidence`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    licences: tuple[FetchedLicence, ...] = ()
    prior_results: tuple[PrerequisiteResult, ...] = ()

    @property
    def verified_types(self) -> frozenset[str]:
        return frozenset(licence.type_code for licence in self.licences)

    @property
    def materials(self) -> tuple[MaterialRef, ...]:
        return tuple(licence.material for licence in self.licences)

    @property
    def satisfied(self) -> frozenset[str]:
        """Prerequisite items an earlier result stands for."""
        return frozenset(result.item for result in self.prior_results)

    @property
    def stored(self) -> bool:
        """Anything to keep with the bundle."""
        return bool(self.licences or self.prior_results)

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> Evidence:
        return cls.model_validate(stored) if stored else cls()

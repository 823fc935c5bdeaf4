"""The manual adapter: for a department with no system yet, file each item into Lianban's
manual work queue (`/v1/manual/<department>/items`), where its staff decide by hand.

Filing, and adding supplements to the filed item, are the adapter's whole job: the
department "calls back" — its staff's acceptance, corrections and decision reach the
correlator from the work queue itself.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, SecretStr

from adapters.base import Adapter
from adapters.context import AdapterContext
from contracts.catalog import Catalog
from contracts.errors import BadAnswerError, ConfigurationError
from contracts.messages import ItemDispatch, ItemSupplement, OutcomeResult


class ManualAdapter(Adapter):
    token: SecretStr = SecretStr("")

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult | None:
        await self._post("items", item, ctx)
        return None

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult | None:
        await self._post("items/supplements", item, ctx)
        return None

    async def _post(self, path: str, message: BaseModel, ctx: AdapterContext) -> None:
        response = await ctx.http.post(
            f"/v1/manual/{self.department}/{path}",
            content=message.model_dump_json(),
            headers={
                "Authorization": f"Bearer {self.token.get_secret_value()}",
                "Content-Type": "application/json",
                "Idempotency-Key": ctx.idempotency_key,
            },
        )
        response.raise_for_status()
        try:
            ctx.log.info("manual.filed", path=path, receipt_no=str(response.json()["receipt_no"]))
        except (ValueError, KeyError, TypeError) as error:
            raise BadAnswerError(f"the work queue answered without a receipt: {error}") from None


def manual_adapter(department: str, catalog: Catalog, endpoint: str | None) -> ManualAdapter:
    """A manual adapter for `department`, filing into the work queue at `endpoint`.

    The queue's token (scope `manual:<department>`) comes from
    LIANBAN_ADAPTER_<DEPARTMENT>_TOKEN.
    """
    variable = f"LIANBAN_ADAPTER_{department.upper()}_TOKEN"
    token = os.environ.get(variable)
    if not endpoint or not token:
        raise ConfigurationError(
            f"the manual adapter for {department!r} needs the router's URL in "
            f"LIANBAN_ADAPTER_{department.upper()}_URL and the work-queue token in {variable}"
        )
    cls: type[ManualAdapter] = type(
        f"Manual_{department}",
        (ManualAdapter,),
        {
            "department": department,
            "services": catalog.services_of(department),
            "token": SecretStr(token),
        },
    )
    cls.check_declaration(catalog)
    return cls(endpoint=endpoint)

"""A courier that speaks `contracts.courier`'s HTTP/JSON API (the loopback simulator,
adapters/simulators/courier.py, does too)."""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from contracts.courier import Shipment, Tracking, Waybill
from router.channels.couriers.base import Courier, CourierUnavailable
from runtime.outbound import OutboundPolicy, OutboundRefused

Answer = TypeVar("Answer", bound=BaseModel)


class HttpJsonCourier(Courier):
    name = "http_json"

    def __init__(
        self,
        base_url: str,
        outbound: OutboundPolicy,
        *,
        api_key: SecretStr | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._outbound = outbound
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._client = httpx.Client(headers=headers, timeout=timeout_seconds)

    def ship(self, shipment: Shipment) -> Waybill:
        request = self._client.build_request(
            "POST",
            f"{self._base_url}/v1/waybills",
            content=shipment.model_dump_json().encode(),
            headers={"Idempotency-Key": shipment.reference},
        )
        return self._send(request, Waybill)

    def track(self, waybill_no: str) -> Tracking:
        request = self._client.build_request("GET", f"{self._base_url}/v1/waybills/{waybill_no}")
        return self._send(request, Tracking)

    def close(self) -> None:
        self._client.close()

    def _send(self, request: httpx.Request, answer: type[Answer]) -> Answer:
        try:
            self._outbound.check(str(request.url))
        except OutboundRefused as refused:
            raise CourierUnavailable(f"refused by the outbound policy: {refused}") from None
        try:
            response = self._client.send(request)
        except httpx.HTTPError as error:
            raise CourierUnavailable(f"{type(error).__name__}: {error}"[:500]) from error
        if not response.is_success:
            raise CourierUnavailable(f"HTTP {response.status_code}")
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as error:
            raise CourierUnavailable(f"unreadable answer: {error.error_count()} errors") from error

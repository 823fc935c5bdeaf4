"""What a courier plugin provides: issue a waybill for a shipment, and track it.

A plugin for another courier's API (顺丰, EMS, 京东 …) subclasses `Courier` and translates
`contracts.courier` to that API, as a department adapter translates a filing. Two rules
make a retried request safe:

- `ship` is idempotent by `Shipment.reference`: asked twice, the courier answers the first
  waybill (send the reference as the courier's own order number or idempotency key).
- Anything that may mend on a retry (network, 5xx, 429, an unreadable answer) raises
  `CourierUnavailable`; the waybill sender backs off and asks again, for as long as it
  takes, and the handover shows the last error meanwhile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from contracts.courier import Shipment, Tracking, Waybill


class CourierUnavailable(Exception):
    """The courier did not answer usefully; the request is retried with backoff."""


class Courier(ABC):
    name: str
    """How the handover names the courier (`HandoverStatus.courier`)."""

    @abstractmethod
    def ship(self, shipment: Shipment) -> Waybill:
        """The waybill for `shipment`: the same one each time for the same reference."""

    @abstractmethod
    def track(self, waybill_no: str) -> Tracking:
        """Where the parcel is, and who signed for it once delivered."""

    def close(self) -> None:  # noqa: B027 - a plugin without connections has nothing to close
        """Release connections; called when the sender stops."""

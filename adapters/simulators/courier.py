"""A courier (快递公司) on loopback, speaking `contracts.courier`'s HTTP/JSON API: it issues
waybill numbers, once per idempotency key, and tracks parcels until signed for.

For demos and tests: `lose_answers` makes it issue a waybill and then answer 503, as a
courier whose answer is lost on the way back would, so a client that retries without
its key would get a second waybill; `sign` plays the delivery person's signed receipt.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Response

from contracts.courier import Shipment, Tracking, TrackingStage, Waybill
from runtime.serving import ThreadedServer


class CourierSimulator:
    """`server` serves the API; `waybills` holds every waybill issued, by reference."""

    def __init__(self, *, prefix: str = "SIM", lose_answers: int = 0) -> None:
        self.prefix = prefix
        self.lose_answers = lose_answers
        self.requests = 0
        self.waybills: dict[str, Waybill] = {}
        self.shipments: dict[str, Shipment] = {}
        self._tracking: dict[str, Tracking] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadedServer(self._app())

    @property
    def url(self) -> str:
        return self.server.url

    def sign(self, waybill_no: str, signer_name: str, signature_ref: str) -> Tracking:
        """The parcel was delivered and signed for (签收)."""
        with self._lock:
            signed = Tracking(
                waybill_no=waybill_no,
                stage=TrackingStage.SIGNED,
                signer_name=signer_name,
                signed_at=datetime.now(UTC),
                signature_ref=signature_ref,
            )
            self._tracking[waybill_no] = signed
            return signed

    def _issue(self, shipment: Shipment) -> tuple[Waybill, bool]:
        with self._lock:
            self.requests += 1
            known = self.waybills.get(shipment.reference)
            if known is not None:
                return known, False
            number = f"{self.prefix}{next(self._numbers):010d}"
            waybill = Waybill(
                waybill_no=number, reference=shipment.reference, created_at=datetime.now(UTC)
            )
            self.waybills[shipment.reference] = waybill
            self.shipments[shipment.reference] = shipment
            self._tracking[number] = Tracking(waybill_no=number, stage=TrackingStage.ACCEPTED)
            return waybill, True

    def _app(self) -> FastAPI:
        app = FastAPI(title="Courier simulator")

        @app.post("/v1/waybills", response_model=Waybill, status_code=201)
        def create_waybill(
            shipment: Shipment,
            response: Response,
            idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
        ) -> Waybill:
            if idempotency_key != shipment.reference:
                raise HTTPException(422, "Idempotency-Key must be the shipment's reference")
            waybill, new = self._issue(shipment)
            with self._lock:
                if self.lose_answers > 0:
                    self.lose_answers -= 1
                    raise HTTPException(503, "answer lost")
            if not new:
                response.status_code = 200
            return waybill

        @app.get("/v1/waybills/{waybill_no}", response_model=Tracking)
        def track(waybill_no: str) -> Tracking:
            with self._lock:
                tracking = self._tracking.get(waybill_no)
            if tracking is None:
                raise HTTPException(404, f"no waybill {waybill_no}")
            return tracking

        return app

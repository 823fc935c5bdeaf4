"""The courier API (快递公司接口) a post delivery (邮寄送达) speaks: HTTP/JSON.

    POST /v1/waybills            Idempotency-Key: <handover key>   Shipment → 201 Waybill
                                 (a repeated key answers the first waybill, 200)
    GET  /v1/waybills/{no}       → Tracking

Couriers' own APIs differ (顺丰, EMS, 京东 …); a courier plugin translates this to its
own, the way a department adapter translates a filing.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.application import PostalAddress


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Shipment(_Wire):
    """What to send where: the results of one handover, in one parcel."""

    reference: str = Field(description="The handover's key; also the Idempotency-Key")
    project_no: str
    contents: str = Field(max_length=200, description="托寄物: what the parcel holds")
    recipient: PostalAddress


class Waybill(_Wire):
    waybill_no: str = Field(min_length=1, max_length=64, description="运单号")
    reference: str
    created_at: AwareDatetime


class TrackingStage(StrEnum):
    ACCEPTED = "accepted"  # 已揽收
    IN_TRANSIT = "in_transit"  # 运输中
    SIGNED = "signed"  # 已签收


class Tracking(_Wire):
    waybill_no: str
    stage: TrackingStage
    signer_name: str | None = None
    signed_at: AwareDatetime | None = None
    signature_ref: str | None = None

"""Courier plugins (快递公司) for post deliveries (邮寄送达): `base.Courier` and its siblings."""

from router.channels.couriers.base import Courier, CourierUnavailable
from router.channels.couriers.http_json import HttpJsonCourier

__all__ = ["Courier", "CourierUnavailable", "HttpJsonCourier"]

"""Notifiers: how a message reaches the applicant (短信告知 and the like). One base class
(`base.Notifier`) and one module per concrete channel."""

from router.channels.notifiers.base import ApplicantMessage, Notifier, NotifierRefused
from router.channels.notifiers.sms_gateway import SmsGateway

__all__ = ["ApplicantMessage", "Notifier", "NotifierRefused", "SmsGateway"]

"""The notifier seam: a channel that takes a message for the applicant.

A notifier is called from `router.channels.applicant_messages` for each due message row,
again and again until it takes it, so `send` must be idempotent by `ApplicantMessage.id`
(a retry after a lost answer must not reach the applicant twice): pass the id to the
service as its idempotency key.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class ApplicantMessage:
    id: uuid.UUID
    recipient: str
    """The applicant's address on the channel: a mobile number for SMS."""
    text: str


class NotifierRefused(Exception):
    """The channel did not take the message (unreachable, or an answer other than
    success); the message is retried with backoff. The text is for the router's log only
    and names no personal data."""


class Notifier(ABC):
    channel: ClassVar[str]
    """Stored with each message: which notifier sends it (`sms`, …)."""

    @abstractmethod
    def send(self, message: ApplicantMessage) -> None:
        """Hand the message to the channel; raise NotifierRefused when it did not take it."""

    def close(self) -> None:  # noqa: B027 (a hook: most notifiers hold nothing)
        """Release what the notifier holds (connections); called once when its sender stops."""

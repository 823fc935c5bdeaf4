"""SMS through an HTTP gateway (the usual shape of a government SMS platform's API):

POST <url>   {"message_id": "<uuid>", "mobile": "13800138000", "content": "…"}
             Idempotency-Key: <uuid>
→ 2xx when taken; the gateway sends one SMS per message id, however often it is posted.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from router.channels.notifiers.base import ApplicantMessage, Notifier, NotifierRefused


class SmsGateway(Notifier):
    channel: ClassVar[str] = "sms"

    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        self._url = url
        self._client = httpx.Client(timeout=timeout_seconds)  # one client, reused

    def send(self, message: ApplicantMessage) -> None:
        try:
            response = self._client.post(
                self._url,
                json={
                    "message_id": str(message.id),
                    "mobile": message.recipient,
                    "content": message.text,
                },
                headers={"Idempotency-Key": str(message.id)},
            )
        except httpx.HTTPError as error:
            raise NotifierRefused(f"{type(error).__name__}: {error}"[:300]) from error
        if not response.is_success:
            raise NotifierRefused(f"HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()

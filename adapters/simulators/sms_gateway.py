"""An SMS gateway on loopback (短信平台), for demos, development and tests: it takes
`POST /sms` as `router.channels.notifiers.SmsGateway` sends it, keeps every message it
would have sent, sends one per message id however often it is posted (its idempotency),
and can be told to refuse the next few posts (503) to exercise the retries."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

from runtime.serving import ThreadedServer


class SmsRequest(BaseModel):
    message_id: str = Field(min_length=1, max_length=64)
    mobile: str = Field(pattern=r"^1[3-9]\d{9}$")
    content: str = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class Sms:
    message_id: str
    mobile: str
    content: str


class SmsGatewaySimulator:
    def __init__(self, *, refuse_first: int = 0) -> None:
        self._sent: dict[str, Sms] = {}
        self._posted: list[SmsRequest] = []
        self._refuse_left = refuse_first
        self._lock = threading.Lock()
        app = FastAPI(title="SMS gateway simulator")

        @app.post("/sms")
        def send(request: SmsRequest) -> Response:
            with self._lock:
                self._posted.append(request)
                if self._refuse_left > 0:
                    self._refuse_left -= 1
                    return Response(status_code=503)
                self._sent.setdefault(request.message_id, Sms(**request.model_dump()))
            return Response(status_code=202)

        self.server = ThreadedServer(app)

    @property
    def url(self) -> str:
        return f"{self.server.url}/sms"

    def posts_mentioning(self, text: str) -> int:
        """Every post whose content holds `text` (a case number), repeats and refusals
        included."""
        with self._lock:
            return sum(1 for request in self._posted if text in request.content)

    def sent_to(self, mobile: str) -> list[Sms]:
        """The messages sent to `mobile`, one per message id, in the order first taken."""
        with self._lock:
            return [sms for sms in self._sent.values() if sms.mobile == mobile]

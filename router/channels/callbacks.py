"""Pushes replies and per-item notices to the platform's callback URL.

Each push is a row written with the reply or notice it carries (so it exists exactly
when they do). The sender POSTs due rows and marks them delivered on a 2xx; any other
answer or a network error (or a URL the outbound policy refuses, runtime.outbound) is
logged and retried with exponential backoff, for as
long as it takes: a callback that keeps failing stays visible in the bundle's status,
never dropped. Rows are claimed with SKIP LOCKED, so several senders may run.

Every attempt is signed (Standard Webhooks, runtime.webhooks): the id is the pushed
message's id, the same on each retry, so the platform processes a push once; the
timestamp is the attempt's, so the platform can refuse an old one replayed.

Most polls find nothing due (with no callback URL in the applications, every one does):
such a poll is one SELECT that locks nothing (`_ANY_DUE`), and only a poll that finds a row
due claims rows, in a session's transaction.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from pydantic import SecretStr
from sqlalchemy import Table, bindparam, select

from contracts.api import TimelineEvent
from router.store import CallbackRow, Database
from router.store.timeline import Actor, record_event
from runtime.batches import drain_batches
from runtime.messaging.backoff import doubling_delay
from runtime.outbound import OutboundPolicy, OutboundRefused
from runtime.webhooks import secret_key, signature_headers

log = structlog.get_logger(__name__)

NOT_DELIVERED = "not delivered: the callback URL did not accept it (the router's log says why)"
_CALLBACKS: Table = CallbackRow.__table__  # type: ignore[assignment]
_ANY_DUE = (
    select(_CALLBACKS.c.id)
    .where(_CALLBACKS.c.delivered_at.is_(None), _CALLBACKS.c.next_attempt_at <= bindparam("now"))
    .limit(1)
)


class CallbackSender:
    def __init__(
        self,
        database: Database,
        outbound: OutboundPolicy,
        *,
        secret: SecretStr,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 600.0,
        idle_seconds: float = 0.2,
        batch_size: int = 50,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._database = database
        self._outbound = outbound
        self._key = secret_key(secret)
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._idle = idle_seconds
        self._batch_size = batch_size
        self._timeout = timeout_seconds
        # Made on the first post: its TLS context (the CA bundle read) and httpx's transport
        # are about 1 MiB of a relay whose bundles ask for no callback.
        self._client: httpx.Client | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            drain_batches(
                stop,
                self.send_due,
                batch_size=self._batch_size,
                idle_seconds=self._idle,
                failed_event="callbacks.failed",
            )
        finally:
            if self._client is not None:
                self._client.close()

    def send_due(self) -> int:
        """Attempt every due callback once; returns how many were attempted."""
        now = datetime.now(UTC)
        if not self._any_due(now):
            return 0
        with self._database.transaction() as session:
            rows = session.scalars(
                select(CallbackRow)
                .where(CallbackRow.delivered_at.is_(None), CallbackRow.next_attempt_at <= now)
                .order_by(CallbackRow.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                error = self._post(row)
                row.attempts += 1
                if error is None:
                    row.delivered_at = datetime.now(UTC)
                    row.last_error = None
                    record_event(
                        session,
                        row.bundle_id,
                        None,
                        TimelineEvent.CALLBACK_DELIVERED,
                        row.kind,
                        actor=Actor.ROUTER,
                    )
                else:
                    delay = doubling_delay(row.attempts, self._backoff, self._max_backoff)
                    row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
                    # The platform sees that it failed, not what the target answered: the
                    # status would make the router a probe of whatever the URL points at.
                    row.last_error = NOT_DELIVERED
                    log.warning(
                        "callback.failed",
                        bundle_id=str(row.bundle_id),
                        attempts=row.attempts,
                        error=error,
                    )
            return len(rows)

    def _any_due(self, now: datetime) -> bool:
        """Whether any row is due, one another sender holds included (the claim then
        skips it, as it always did). A Core statement on a pooled connection, rolled back
        on its return: without a session, the ORM and a commit, about 60 % of an empty
        claim's CPU."""
        with self._database.engine.connect() as connection:
            return connection.execute(_ANY_DUE, {"now": now}).first() is not None

    def _post(self, row: CallbackRow) -> str | None:
        """None when the platform took it, else why not (for the router's log)."""
        try:
            # Prefixes narrowed since the row was written apply to it too.
            if reason := self._outbound.callback_refusal(row.url):
                raise OutboundRefused(reason)
            self._outbound.check(row.url)
        except OutboundRefused as refused:
            return f"refused by the outbound policy: {refused}"
        message_id = str(json.loads(row.body)["message_id"])
        headers = {
            "Content-Type": "application/json",
            **signature_headers(self._key, message_id, datetime.now(UTC), row.body),
        }
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout)
        try:
            response = self._client.post(row.url, content=row.body, headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:500]
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

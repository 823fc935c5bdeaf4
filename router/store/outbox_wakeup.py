"""Wakes relays in other processes the moment an outbox row is committed.

A transaction that writes outbox rows also sends `NOTIFY lianban_outbox` (PostgreSQL
delivers it at commit, and not at all on rollback); each relay process LISTENs and wakes
its relay at once instead of waiting out its poll interval. A bundle crosses the relay
once per dependency stage, so the poll interval was paid several times per bundle. The
poll stays as the fallback: a missed notification (listener reconnecting, PostgreSQL
restarting) delays a message by one interval, it never loses one.
"""

from __future__ import annotations

import threading

import psycopg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from runtime.messaging.backoff import Backoff

log = structlog.get_logger(__name__)

CHANNEL = "lianban_outbox"
_NOTIFIED = "lianban_outbox_notified"


def notify_relays(session: Session) -> None:
    """Ask for a notification at this transaction's commit (once per transaction)."""
    if session.info.get(_NOTIFIED) or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"NOTIFY {CHANNEL}"))
    session.info[_NOTIFIED] = True


class OutboxListener:
    """LISTENs on its own connection and sets `wake` on every notification."""

    def __init__(self, database_url: str, wake: threading.Event) -> None:
        self._conninfo = make_url(database_url).set(drivername="postgresql")
        self._wake = wake
        self.listening = threading.Event()

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(0.5, 10.0)
        while not stop.is_set():
            try:
                self._listen(stop)
            except psycopg.Error as error:
                self.listening.clear()
                delay = backoff.next_delay()
                log.warning("outbox.listener_failed", error=repr(error), retry_in=round(delay, 2))
                stop.wait(delay)
            else:
                backoff.reset()

    def _listen(self, stop: threading.Event) -> None:
        url = self._conninfo.render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            while not stop.is_set():
                for _ in connection.notifies(timeout=1.0):
                    self._wake.set()

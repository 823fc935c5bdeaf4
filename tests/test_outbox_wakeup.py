"""A relay in another process is woken by the commit that wrote outbox rows (PostgreSQL
LISTEN/NOTIFY), not by its next poll; a rolled-back transaction wakes nobody."""

from __future__ import annotations

import threading

import pytest

from adapters.testing.dispatches import dispatch_for
from contracts import topology
from router.store import Database
from router.store.outbox import enqueue
from router.store.outbox_wakeup import OutboxListener

# LISTEN/NOTIFY is PostgreSQL's alone.
pytestmark = [
    pytest.mark.connected,
    pytest.mark.parametrize("database", ["postgresql"], indirect=True),
]


def _enqueue_a_dispatch(database: Database, *, then_fail: bool = False) -> None:
    dispatch = dispatch_for("birth_household_registration", department="police")
    with database.transaction() as session:
        enqueue(
            session,
            exchange=topology.DISPATCH_EXCHANGE,
            routing_key=topology.dispatch_routing_key("police", dispatch.service),
            message=dispatch,
        )
        if then_fail:
            raise RuntimeError("rolled back")


def test_a_commit_with_outbox_rows_wakes_a_listening_relay(database: Database) -> None:
    wake, stop = threading.Event(), threading.Event()
    listener = OutboxListener(database.url, wake)
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert listener.listening.wait(10)
        with pytest.raises(RuntimeError):
            _enqueue_a_dispatch(database, then_fail=True)
        assert not wake.wait(2), "a rolled-back transaction woke the relay"
        _enqueue_a_dispatch(database)
        assert wake.wait(10)
    finally:
        stop.set()
        thread.join(10)

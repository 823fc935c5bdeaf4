"""PostgreSQL failover under load (finding 13): the primary dies mid-stream, its
synchronous replica is promoted, every role reconnects to it through the multi-host URL
(`target_session_attrs=read-write`), and the chaos check still finds nothing lost and
nothing duplicated.

Marked `chaos`, so `make test` runs it once and the helpers' targeted runs do not; it
uses PostgreSQL servers of its own (tests/postgres_pair.py) and the machine's RabbitMQ
through a vhost of its own, and restarts neither machine service.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from chaos_harness import running_chaos_stack
from postgres_pair import ReplicatedPostgres

from contracts.catalog import Catalog
from router.store import Database

pytestmark = [pytest.mark.chaos, pytest.mark.connected]

BUNDLES_PER_SECOND = 2.0
LOAD_SECONDS = 12.0  # before and after the failover each


def test_the_database_fails_over_to_its_replica_and_nothing_is_lost_or_duplicated(
    amqp_url: str, catalog: Catalog, tmp_path: Path
) -> None:
    pair = ReplicatedPostgres()
    pair.start()
    try:
        Database(pair.url).migrate()
        with running_chaos_stack(
            database_url=pair.url, broker_url=amqp_url, catalog=catalog, workdir=tmp_path
        ) as stack:
            stop = threading.Event()
            stack.platform.submit_stream(BUNDLES_PER_SECOND, stop)
            time.sleep(LOAD_SECONDS)  # real processes under real load: no simulated clock
            pair.fail_over()
            time.sleep(LOAD_SECONDS)
            stop.set()
            stack.platform.wait_submitted(timeout=300)
            stack.wait_for_replies(timeout=300)
            verdict = stack.check()
    finally:
        pair.stop()
    print(f"\nfailover verdict: {verdict.summary()}")
    assert verdict.bundles >= 20
    assert verdict.ok, verdict

"""Chaos: the real stack under SIGKILLs at every step boundary, broker and database
restarts, and a department outage — then nothing lost, nothing duplicated.

`make test` runs a short stream; `make chaos` sets LIANBAN_CHAOS_ROUNDS for a long run.
The verdict's figures are printed, for the closing note.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_harness import ChaosStack, running_chaos_stack
from conftest import fresh_postgres_database
from rabbitmq_cluster import Cluster

from contracts.catalog import Catalog
from runtime.failpoints import BOUNDARIES

pytestmark = [pytest.mark.chaos, pytest.mark.connected]

ROUNDS = int(os.environ.get("LIANBAN_CHAOS_ROUNDS", "1"))
BUNDLES_PER_SECOND = float(os.environ.get("LIANBAN_CHAOS_RATE", "2"))
OUTAGE_SECONDS = float(os.environ.get("LIANBAN_CHAOS_OUTAGE_SECONDS", "10"))
NODE_DOWN_SECONDS = float(os.environ.get("LIANBAN_CHAOS_NODE_DOWN_SECONDS", "8"))

# Which role reaches each boundary.
ROLE_OF = {
    "intake": "serve",
    "relay": "relay",
    "adapter": "adapter-police",
    "correlator": "correlate",
}


def _kill_at_every_boundary(stack: ChaosStack, nth: int) -> None:
    assert stack.supervisor is not None
    for boundary in BOUNDARIES:
        role = ROLE_OF[boundary.split(".")[0]]
        died = stack.supervisor.arm(role, boundary, nth=nth, timeout=90)
        assert died, f"{role} never reached {boundary}"


@pytest.fixture
def own_database() -> Iterator[str]:
    """The chaos tests count everything in the database: one of their own, which no
    earlier test has left bundles in (each test has a vhost of its own anyway)."""
    with fresh_postgres_database() as url:
        yield url


def test_nothing_is_lost_or_duplicated_through_kills_restarts_and_an_outage(
    own_database: str, amqp_url: str, catalog: Catalog, tmp_path: Path
) -> None:
    postgres_url = own_database
    with running_chaos_stack(
        database_url=postgres_url, broker_url=amqp_url, catalog=catalog, workdir=tmp_path
    ) as stack:
        stop = threading.Event()
        stack.platform.submit_stream(BUNDLES_PER_SECOND, stop)
        for round_no in range(ROUNDS):
            _kill_at_every_boundary(stack, nth=2 + round_no)
            stack.restart_broker()
            time.sleep(2)
            stack.restart_database()
            time.sleep(2)
            # Longer than the delivery limit would last with naive requeues, and longer
            # than one delivery's in-process attempts: the delayed retries carry it.
            stack.department_outage("police", seconds=OUTAGE_SECONDS)
        stop.set()
        stack.platform.wait_submitted(timeout=300)
        stack.wait_for_replies(timeout=300)
        verdict = stack.check()
    print(f"\nchaos verdict: {verdict.summary()}")
    assert verdict.bundles >= 20
    assert verdict.failpoint_kills == len(BOUNDARIES) * ROUNDS
    assert verdict.ok, verdict


def test_a_three_node_cluster_loses_one_node_then_another_and_nothing_is_lost(
    own_database: str, catalog: Catalog, tmp_path: Path
) -> None:
    postgres_url = own_database
    cluster = Cluster()
    cluster.start()
    try:
        with running_chaos_stack(
            database_url=postgres_url, broker_url=cluster.url, catalog=catalog, workdir=tmp_path
        ) as stack:
            listed = cluster.nodes[0].ctl(
                "list_queues", "name", "type", "members", "--formatter", "json"
            )
            queues = json.loads(listed)
            # Parking lots are classic (browsing must not spend a delivery count): one node.
            assert {queue["type"] for queue in queues} == {"quorum", "classic"}
            for queue in queues:
                if queue["type"] == "quorum":
                    assert len(queue["members"]) == 3, queue
                else:
                    assert queue["name"].endswith(".parking"), queue
            stop = threading.Event()
            stack.platform.submit_stream(BUNDLES_PER_SECOND, stop)
            for node in (cluster.nodes[1], cluster.nodes[0]):  # a follower, then the seed
                time.sleep(NODE_DOWN_SECONDS)
                node.kill()
                stack.node_kills += 1
                time.sleep(NODE_DOWN_SECONDS)
                node.start()
            stop.set()
            stack.platform.wait_submitted(timeout=300)
            stack.wait_for_replies(timeout=300)
            verdict = stack.check()
    finally:
        cluster.stop()
    print(f"\ncluster chaos verdict: {verdict.summary()}")
    assert verdict.bundles >= 10
    assert verdict.node_kills == 2
    assert verdict.ok, verdict

"""deploy/rabbitmq/definitions.json: current with the code, and, loaded into the machine's
RabbitMQ, each department's user may read only its own queue and publish only its outcomes."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AMQP_HOST
from harness import eventually, signed
from kombu import Connection, Queue

from adapters.registry import adapter_for
from adapters.testing.dispatches import dispatch_for
from contracts import topology
from contracts.catalog import Catalog
from contracts.errors import PublishFailed
from contracts.messages import ItemOutcome
from lianban.settings import Settings
from lianban.stack import Stack
from router.operations.broker_definitions import definitions, is_current, password_hash
from runtime.messaging import Broker, Delivery, Outgoing, Publisher
from runtime.messaging.declaration import RETRY_DELAY_HEADER

SERVICE = "birth_household_registration"


def test_the_checked_in_definitions_are_current(catalog: Catalog) -> None:
    assert is_current(catalog.departments), "run `lianban broker definitions`"


def test_no_password_is_stored_in_clear() -> None:
    stored = password_hash("s3cret-password")
    assert "s3cret" not in stored and stored != password_hash("s3cret-password")  # salted
    document = definitions(["police"], passwords={"lianban-police": "s3cret-password"})
    assert "s3cret" not in json.dumps(document)


@dataclass
class Deployment:
    vhost: str
    passwords: dict[str, str]
    prefix: str

    def url(self, user: str) -> str:
        name = f"{self.prefix}{user}"
        return f"amqp://{name}:{self.passwords[name]}@{AMQP_HOST}/{self.vhost}"


def _rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "--quiet", *args],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


@pytest.fixture
def deployment(amqp_url: str) -> Iterator[Deployment]:
    """The definitions for police and hrss, loaded into a vhost and users of this test's own
    (`amqp_url`: skipped, or failed on CI, when RabbitMQ is unreachable)."""
    tag = uuid.uuid4().hex[:10]
    vhost, prefix = f"lianban_perm_{tag}", f"lbperm{tag}-"
    users = [f"{prefix}{name}" for name in ("router", "police", "hrss")]
    passwords = {user: secrets.token_urlsafe(16) for user in users}
    document = definitions(["police", "hrss"], vhost=vhost, user_prefix=prefix, passwords=passwords)
    # From stdin: rabbitmqctl runs as the rabbitmq user, who cannot read pytest's tmp dirs.
    try:
        _rabbitmqctl("import_definitions", stdin=json.dumps(document))
        _wait_until_imported(vhost, len(document["queues"]), len(document["topic_permissions"]))
        yield Deployment(vhost, passwords, prefix)
    finally:
        for command in [("delete_user", user) for user in users] + [("delete_vhost", vhost)]:
            with contextlib.suppress(subprocess.CalledProcessError):  # never created
                _rabbitmqctl(*command)


def _wait_until_imported(vhost: str, queues: int, topic_permissions: int) -> None:
    """The import runs asynchronously in the broker."""

    def imported() -> tuple[int, int]:
        try:
            listed_queues = _rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name")
            listed_topics = _rabbitmqctl(
                "list_topic_permissions", "-p", vhost, "--no-table-headers"
            )
        except subprocess.CalledProcessError:  # the vhost is not there yet
            listed_queues = listed_topics = ""
        return len(listed_queues.split()), len(listed_topics.splitlines())

    eventually(
        imported,
        lambda counts: counts == (queues, topic_permissions),
        timeout=60,
        every=0.5,
        message=f"the definitions were not imported into {vhost}",
    )


def _publish(url: str, exchange: str, routing_key: str, body: bytes = b"{}") -> None:
    message = Outgoing(exchange, routing_key, body, str(uuid.uuid4()), str(uuid.uuid4()))
    with Publisher(Broker(url)) as publisher:
        publisher.publish(message)


def _get(url: str, queue: str) -> bytes | None:
    with Connection(url) as connection:
        message = Queue(queue, no_declare=True)(connection.default_channel).get(no_ack=True)
        return None if message is None else Delivery.of(message).body


@pytest.mark.connected
def test_the_police_user_reads_only_its_queue_and_publishes_only_its_outcomes(
    deployment: Deployment,
) -> None:
    router, police = deployment.url("router"), deployment.url("police")
    _publish(router, topology.DISPATCH_EXCHANGE, "dept.police.x", b'"for police"')
    _publish(router, topology.DISPATCH_EXCHANGE, "dept.hrss.x", b'"for hrss"')

    assert _get(police, topology.department_queue("police")) == b'"for police"'
    with Connection(police) as connection:  # the consumer's liveness check: a passive declare
        own = Queue(topology.department_queue("police"), no_declare=True)
        assert own(connection.default_channel).queue_declare(passive=True).message_count == 0
    _publish(police, topology.OUTCOMES_EXCHANGE, topology.outcome_routing_key("police"))

    with pytest.raises(Exception, match="ACCESS_REFUSED"):
        _get(police, topology.department_queue("hrss"))
    with pytest.raises(PublishFailed, match="ACCESS_REFUSED"):
        _publish(police, topology.DISPATCH_EXCHANGE, "dept.hrss.x")
    with pytest.raises(PublishFailed, match="ACCESS_REFUSED"):
        _publish(police, topology.OUTCOMES_EXCHANGE, topology.outcome_routing_key("hrss"))
    with pytest.raises(Exception, match="ACCESS_REFUSED"), Connection(police) as connection:
        Queue("lianban.dept.police.mine", durable=True)(connection.default_channel).declare()

    # Untouched by the refusals: hrss's dispatch is still there, and police's outcome arrived.
    assert _get(router, topology.department_queue("hrss")) == b'"for hrss"'
    assert _get(router, topology.OUTCOMES_QUEUE) == b"{}"


@pytest.mark.connected
def test_an_adapter_process_works_with_only_its_department_permissions(
    deployment: Deployment, catalog: Catalog, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        broker_url=deployment.url("police"),
        materials_dir=tmp_path / "materials",
    )
    police = adapter_for("police", catalog, simulated=True)
    stack = Stack(settings, catalog, roles=(), adapters=[police])
    stack.start()  # declares nothing: the police user may not
    try:
        dispatch = dispatch_for(SERVICE, department="police")
        request = Outgoing(
            exchange=topology.DISPATCH_EXCHANGE,
            routing_key=topology.dispatch_routing_key("police", SERVICE),
            body=dispatch.model_dump_json().encode(),
            message_id=str(dispatch.message_id),
            correlation_id=str(dispatch.bundle_id),
        )
        with Publisher(Broker(deployment.url("router"))) as publisher:
            publisher.publish(signed(request, keyring=stack.keyring))
        answered = _wait_for_body(deployment.url("router"), topology.OUTCOMES_QUEUE)
    finally:
        stack.stop()
    outcome = ItemOutcome.model_validate_json(answered)
    assert (outcome.department, outcome.dispatch_id) == ("police", dispatch.message_id)


# Every exchange a vhost has besides the definitions' own: the default and amq.* ones.
BUILT_IN_EXCHANGES = ("", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic")


def _aims(other: str) -> list[str]:
    """Routing keys that would reach another department, or the router, if anything let
    them: its dispatches and retries, its queue and parking lot by name, the router's."""
    queue = topology.department_queue(other)
    return [
        topology.dispatch_routing_key(other, "x"),
        topology.dispatch_routing_key(other, "retry"),
        topology.outcome_routing_key(other),
        queue,
        topology.parking_queue(queue),
        topology.reply_routing_key("newborn"),
        topology.REPLIES_QUEUE,
        topology.parking_queue(topology.REPLIES_QUEUE),
        topology.parking_queue(topology.OUTCOMES_QUEUE),
        "#",
    ]


def _depths(url: str, queues: list[str]) -> dict[str, int]:
    with Connection(url) as connection:
        channel = connection.default_channel
        return {
            name: int(Queue(name, no_declare=True)(channel).queue_declare(passive=True)[1])
            for name in queues
        }


@pytest.mark.connected
def test_no_exchange_lets_a_department_reach_another_department_or_the_replies(
    deployment: Deployment,
) -> None:
    """Finding 2: each department user publishes to every exchange of the vhost with every
    routing key and the delay header that could aim elsewhere; whatever the broker takes
    lands only in that department's own queues (and its outcome in the outcomes queue)."""
    document = definitions(["police", "hrss"], vhost=deployment.vhost)
    every_exchange = [exchange["name"] for exchange in document["exchanges"]]
    every_queue = [queue["name"] for queue in document["queues"]]
    departments = {"police": "hrss", "hrss": "police"}
    for department, other in departments.items():
        for exchange in [*every_exchange, *BUILT_IN_EXCHANGES]:
            for aim in _aims(other):
                message = Outgoing(
                    exchange,
                    aim,
                    f'"{department} via {exchange} to {aim}"'.encode(),
                    str(uuid.uuid4()),
                    str(uuid.uuid4()),
                    {RETRY_DELAY_HEADER: "1s"},
                )
                with (
                    contextlib.suppress(PublishFailed),
                    Publisher(Broker(deployment.url(department))) as publisher,
                ):
                    publisher.publish(message)

    router = deployment.url("router")
    tiers = [name for name in every_queue if ".retry." in name]
    eventually(
        lambda: _depths(router, tiers),
        lambda depths: not any(depths.values()),
        timeout=60,
        every=0.5,
        message="the delayed copies never left their retry tiers",
    )
    reached = {name for name, depth in _depths(router, every_queue).items() if depth}
    own = {
        name
        for name in every_queue
        for department in departments
        if name.startswith(topology.department_queue(department))
    }
    assert reached - own == set(), "a department reached a queue that is not its own"
    for department in departments:
        mine = topology.department_queue(department)
        with Connection(router) as connection:
            queue = Queue(mine, no_declare=True)(connection.default_channel)
            while (message := queue.get(no_ack=True)) is not None:
                assert Delivery.of(message).body.startswith(f'"{department} '.encode())
            parking = Queue(topology.parking_queue(mine), no_declare=True)
            while (message := parking(connection.default_channel).get(no_ack=True)) is not None:
                assert Delivery.of(message).body.startswith(f'"{department} '.encode())


def _wait_for_body(url: str, queue: str, timeout: float = 30) -> bytes:
    body: bytes = eventually(
        lambda: _get(url, queue),
        timeout=timeout,
        every=0.1,
        message=f"nothing arrived in {queue}",
    )
    return body

"""One department's messaging alone, against the machine's RabbitMQ: `python -m bench.messaging`.

A vhost of its own; the real `AdapterWorker` (around `bench.department`'s instant
adapter) consumes N signed birth-registration dispatches offered at a fixed rate, and a
`ConsumerLoop` with a batch handler (as the correlator's) takes the outcomes. Prints, per
message, RabbitMQ's CPU (beam.smp, shared with whatever else runs on the machine: read it
beside the load average), the Erlang reductions of this vhost's connections, channels and
queues (a count, unmoved by other vhosts), the department threads' CPU, and with
`--count` the AMQP methods each side sent and received (counting costs CPU itself: take
CPU figures from a run without it).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import amqp
from amqp import spec

from adapters.worker import AdapterWorker
from bench.department import instant_department
from bench.environment import AMQP_HOST, CLOCK_TICKS, cpu_seconds, retrying
from bench.phases import load_average
from contracts import topology
from contracts.application import Application
from contracts.catalog import default_catalog
from contracts.messages import ItemDispatch
from contracts.samples import sample_application
from runtime.logs import configure_logging
from runtime.messaging import Ack, Broker, ConsumerLoop, Delivery, Outgoing, Publisher
from runtime.messaging.declaration import declare_topology, outcomes_queue
from runtime.messaging.signing import ROUTER_SIGNER, Keyring

DEPARTMENT = "police"
ITEM = "birth_registration"
WARM_UP = 10


class Outcomes:
    """The outcomes of `WARM_UP` dispatches and then of `messages` more, as they come back:
    `warmed_up` and `done` are set once each group is in."""

    def __init__(self, messages: int) -> None:
        self._expected = WARM_UP + messages
        self.count = 0
        self.warmed_up, self.done = threading.Event(), threading.Event()

    def take(self, batch: Sequence[Delivery]) -> list[Ack]:
        self.count += len(batch)
        if self.count >= WARM_UP:
            self.warmed_up.set()
        if self.count >= self._expected:
            self.done.set()
        return [Ack()] * len(batch)

    def collector(self, broker: Broker) -> ConsumerLoop:
        """A consumer of the outcomes queue that takes them, one or a batch at a time."""
        return ConsumerLoop(
            broker,
            outcomes_queue(),
            lambda delivery: self.take([delivery])[0],
            batch_handler=self.take,
        )


# Every process of the vhost's connections, channels and queues, with their reductions.
VHOST_REDUCTIONS = """
VHost = <<"{vhost}">>,
Reductions = fun(P) when is_pid(P) ->
                     case erlang:process_info(P, reductions) of
                         {{reductions, R}} -> R; undefined -> 0 end;
                (_) -> 0 end,
Local = fun({{Name, _Node}}) -> whereis(Name); (P) -> P end,
Queues = [Local(amqqueue:get_pid(Q)) || Q <- rabbit_amqqueue:list(VHost)],
Connections = [P || P <- rabbit_networking:connections(),
                    rabbit_reader:info(P, [vhost]) =:= [{{vhost, VHost}}]],
Channels = [P || P <- rabbit_channel:list(),
                 proplists:get_value(vhost, rabbit_channel:info(P, [vhost])) =:= VHost],
{{lists:sum(lists:map(Reductions, Queues)), lists:sum(lists:map(Reductions, Connections)),
  lists:sum(lists:map(Reductions, Channels))}}.
"""
METHOD_NAMES = {
    value: f"{holder.__name__.lower()}.{name}"
    for holder in vars(spec).values()
    if isinstance(holder, type) and hasattr(holder, "CLASS_ID")
    for name, value in vars(holder).items()
    if isinstance(value, tuple)
}


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout


@contextmanager
def fresh_vhost() -> Iterator[str]:
    vhost = f"lianban_bench_messaging_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        retrying(lambda: _rabbitmqctl("delete_vhost", vhost))


def beam_cpu_seconds() -> float:
    pgrep = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True)
    return sum(cpu_seconds(int(pid)) for pid in pgrep.stdout.split())


def vhost_reductions(vhost: str) -> tuple[int, int, int]:
    """(queues, connections, channels) reductions of `vhost` so far."""
    queues, connections, channels = (
        _rabbitmqctl("eval", VHOST_REDUCTIONS.format(vhost=vhost)).strip("{}\n").split(",")
    )
    return int(queues), int(connections), int(channels)


def thread_cpu_seconds(threads: Sequence[threading.Thread]) -> float:
    total = 0
    for thread in threads:
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        total += int(utime) + int(stime)
    return total / CLOCK_TICKS


class MethodCounts:
    """AMQP methods sent and received, by thread, counted while installed."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def installed(self) -> Iterator[None]:
        send_method = amqp.abstract_channel.AbstractChannel.send_method
        on_inbound = amqp.Connection.on_inbound_method
        heartbeat = amqp.Connection.send_heartbeat

        def sent(channel: Any, sig: tuple[int, int], *args: Any, **kwargs: Any) -> Any:
            self._count("sent", sig)
            return send_method(channel, sig, *args, **kwargs)

        def received(connection: Any, channel_id: int, sig: tuple[int, int], *args: Any) -> Any:
            self._count("received", sig)
            return on_inbound(connection, channel_id, sig, *args)

        def beat(connection: Any) -> Any:
            self.counts[(threading.current_thread().name, "sent heartbeat")] += 1
            return heartbeat(connection)

        amqp.abstract_channel.AbstractChannel.send_method = sent
        amqp.Connection.on_inbound_method = received
        amqp.Connection.send_heartbeat = beat
        try:
            yield
        finally:
            amqp.abstract_channel.AbstractChannel.send_method = send_method
            amqp.Connection.on_inbound_method = on_inbound
            amqp.Connection.send_heartbeat = heartbeat

    def _count(self, direction: str, sig: tuple[int, int]) -> None:
        name = METHOD_NAMES.get(tuple(sig), str(sig))
        self.counts[(threading.current_thread().name, f"{direction} {name}")] += 1


def dispatches(count: int) -> list[ItemDispatch]:
    catalog = default_catalog()
    newborn = catalog.bundle_types["newborn"]
    item = newborn.item(ITEM)
    application = Application.model_validate(sample_application(newborn, "BENCH-1"))
    return [
        ItemDispatch.for_item(application, uuid.uuid4(), item, form_fields=item.form_fields)
        for _ in range(count)
    ]


def signed(keyring: Keyring, dispatch: ItemDispatch) -> Outgoing:
    body = dispatch.model_dump_json().encode()
    message_id, correlation_id = str(dispatch.message_id), str(dispatch.bundle_id)
    return Outgoing(
        exchange=topology.DISPATCH_EXCHANGE,
        routing_key=topology.dispatch_routing_key(DEPARTMENT, dispatch.service),
        body=body,
        message_id=message_id,
        correlation_id=correlation_id,
        headers=keyring.sign(
            ROUTER_SIGNER, body=body, message_id=message_id, correlation_id=correlation_id
        ),
    )


@contextmanager
def running(name: str, run: Callable[[threading.Event], None]) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)


def measure(messages: int, rate: float, together: int, count: bool) -> None:
    catalog = default_catalog()
    keyring = Keyring.ephemeral([ROUTER_SIGNER, DEPARTMENT])
    outgoing = [signed(keyring, dispatch) for dispatch in dispatches(WARM_UP + messages)]
    outcomes = Outcomes(messages)
    counts = MethodCounts()
    with fresh_vhost() as vhost, counts.installed() if count else _nothing():
        broker = Broker(f"amqp://guest:guest@{AMQP_HOST}/{vhost}")
        with broker.connect() as connection:
            declare_topology(connection, catalog.departments)
        worker = AdapterWorker(instant_department(DEPARTMENT, catalog), broker, keyring=keyring)
        collector = outcomes.collector(broker)
        with (
            Publisher(broker) as producer,
            running("department", worker.run) as department,
            running("collector", collector.run),
        ):
            assert worker.ready.wait(30) and collector.ready.wait(30)
            calls = next(t for t in threading.enumerate() if t.name == f"{DEPARTMENT}-calls")
            threading.current_thread().name = "producer"
            # Warm-up: every connection open (the publishers connect at their first message).
            producer.publish_many(outgoing[:WARM_UP])
            if not outcomes.warmed_up.wait(30):
                raise SystemExit("the warm-up's outcomes did not come back")
            counts.counts.clear()
            before = (
                beam_cpu_seconds(),
                vhost_reductions(vhost),
                thread_cpu_seconds([department, calls]),
                time.monotonic(),
            )
            start = time.monotonic()
            for sent in range(0, messages, together):
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                producer.publish_many(outgoing[WARM_UP + sent : WARM_UP + sent + together])
            if not outcomes.done.wait(60):
                raise SystemExit(f"only {outcomes.count} of {messages} outcomes came back")
            after = (
                beam_cpu_seconds(),
                vhost_reductions(vhost),
                thread_cpu_seconds([department, calls]),
                time.monotonic(),
            )
            counted = counts.counts.copy()
    beam = after[0] - before[0]
    reductions = [a - b for a, b in zip(after[1], before[1], strict=True)]
    print(
        f"{messages} dispatches at {rate}/s, {together} together, in {after[3] - before[3]:.1f} s; "
        f"load average {load_average()}; per message:"
    )
    print(f"RabbitMQ (beam.smp, whole machine's) {1000 * beam / messages:8.3f} ms CPU")
    print(
        f"vhost reductions {sum(reductions) / messages:8.0f} "
        f"(queues {reductions[0] / messages:.0f}, connections {reductions[1] / messages:.0f}, "
        f"channels {reductions[2] / messages:.0f})"
    )
    print(f"department threads           {1000 * (after[2] - before[2]) / messages:8.3f} ms CPU")
    for (thread, method), number in sorted(counted.items()):
        print(f"{thread:>12} {method:<28} {number / messages:6.3f}")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0, help="dispatches offered per second")
    parser.add_argument("--together", type=int, default=1, help="dispatches published at once")
    parser.add_argument("--count", action="store_true", help="count AMQP methods")
    args = parser.parse_args()
    configure_logging("warning")  # as `make bench` runs the departments
    measure(args.messages, args.rate, args.together, args.count)


if __name__ == "__main__":
    main()

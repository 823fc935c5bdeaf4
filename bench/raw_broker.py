"""The broker's own limit: persistent messages of the router's mean size through one
quorum queue, publisher confirms pipelined (up to WINDOW unconfirmed), producer and
consumer in separate processes (pika). The run's rate is what the router's messages per
second are compared with.

    python -m bench.raw_broker produce|consume <amqp url> <count> <size>
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pika

QUEUE = "bench.raw"
WINDOW = 1000  # unconfirmed messages in flight
PREFETCH = 1000
ACK_EVERY = 100  # the consumer acknowledges with `multiple`, as a batch


def declare(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    connection.close()


class PipelinedProducer:
    """Keeps WINDOW messages unconfirmed; every confirm (often `multiple`) lets more go."""

    def __init__(self, url: str, count: int, size: int) -> None:
        self._count = count
        self._body = b"x" * size
        self._sent = 0
        self._confirmed = 0
        self._channel: Any = None
        self._connection = pika.SelectConnection(
            pika.URLParameters(url), on_open_callback=self._on_open
        )

    def run(self) -> None:
        self._connection.ioloop.start()

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.confirm_delivery(self._on_confirm)
        self._fill_window()

    def _fill_window(self) -> None:
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        while self._sent < self._count and self._sent - self._confirmed < WINDOW:
            self._channel.basic_publish("", QUEUE, self._body, properties)
            self._sent += 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            raise RuntimeError("the broker refused a message")
        if method.multiple:
            self._confirmed = method.delivery_tag
        else:
            self._confirmed += 1
        if self._confirmed >= self._count:
            self._connection.close()
            self._connection.ioloop.stop()
        else:
            self._fill_window()


def consume(url: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    for received, (method, _properties, _body) in enumerate(channel.consume(QUEUE), start=1):
        if received % ACK_EVERY == 0 or received == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if received == count:
            break
    channel.cancel()
    connection.close()


@dataclass(frozen=True)
class RawResult:
    messages: int
    size: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def measure(url: str, count: int, size: int) -> RawResult:
    """Start the consumer, then the producer; time from the producer's start to the
    consumer's last acknowledgement."""
    declare(url)
    command = [sys.executable, "-m", "bench.raw_broker"]
    consumer = subprocess.Popen([*command, "consume", url, str(count), str(size)])
    producer = subprocess.Popen(
        [*command, "produce", url, str(count), str(size)], stdout=subprocess.PIPE
    )
    stdout, _ = producer.communicate(timeout=300)
    consumer.wait(timeout=300)
    finished = time.time()
    if producer.returncode or consumer.returncode:
        raise RuntimeError("the raw broker producer or consumer failed")
    started = float(json.loads(stdout)["started"])
    return RawResult(count, size, finished - started)


def main() -> None:
    role, url, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if role == "produce":
        started = time.time()
        PipelinedProducer(url, count, size).run()
        print(json.dumps({"started": started}))
    else:
        consume(url, count)


if __name__ == "__main__":
    main()

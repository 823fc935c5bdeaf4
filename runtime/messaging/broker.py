"""Where the broker is and how to open connections to it."""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection

from runtime.messaging.transport import AmqpTransport

MEMORY_URL = "memory://"


@dataclass(frozen=True)
class Broker:
    """A broker URL and the connection settings every role shares.

    Each thread opens its own connections: kombu connections are not thread-safe, and
    publishing on a connection that is consuming re-enters its drain loop.
    """

    url: str = MEMORY_URL
    heartbeat: int = 30
    confirm_timeout: float = 10.0
    connect_timeout: float = 5.0
    # The in-memory transport polls; a short interval keeps embedded latency low.
    memory_polling_interval: float = 0.005

    @property
    def is_memory(self) -> bool:
        return self.url.startswith("memory://")

    def connect(self) -> Connection:
        if self.is_memory:
            return Connection(
                self.url, transport_options={"polling_interval": self.memory_polling_interval}
            )
        # No `confirm_publish`: the Publisher pipelines its own confirms. A URL may list
        # several cluster nodes (`amqp://a;amqp://b`): a node that refuses is skipped at
        # once; past the connect timeout the caller's own backoff takes over. Plain AMQP
        # reads through `AmqpTransport` (a failover to another node, kombu's own).
        return Connection(
            self.url,
            transport=AmqpTransport if self.url.startswith("amqp://") else None,
            heartbeat=self.heartbeat,
            connect_timeout=self.connect_timeout,
            transport_options={"interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        )

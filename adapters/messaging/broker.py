"""Where the broker is and how to open connections to it."""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection

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
        return Connection(
            self.url,
            heartbeat=self.heartbeat,
            transport_options={"confirm_publish": True},
        )

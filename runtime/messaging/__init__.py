"""The messaging runtime shared by the router and the adapters.

It stands below both: connections, topology declaration, a confirmed publisher and a
consumer loop. The same code drives kombu's in-memory transport (embedded mode) and
RabbitMQ, so one test body exercises both.
"""

from contracts.errors import MessageRefused, PublishFailed
from runtime.messaging.broker import Broker
from runtime.messaging.consumer import ConsumerLoop
from runtime.messaging.declaration import declare_topology
from runtime.messaging.publisher import Outgoing, Publisher

__all__ = [
    "Broker",
    "ConsumerLoop",
    "MessageRefused",
    "Outgoing",
    "PublishFailed",
    "Publisher",
    "declare_topology",
]

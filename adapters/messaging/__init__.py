"""The messaging runtime shared by the router and the adapters.

It stands below both: connections, topology declaration, a confirmed publisher and a
consumer loop. The same code drives kombu's in-memory transport (embedded mode) and
RabbitMQ, so one test body exercises both.
"""

from adapters.messaging.broker import Broker
from adapters.messaging.consumer import ConsumerLoop, Refused
from adapters.messaging.publisher import Outgoing, Publisher, PublishFailed
from adapters.messaging.topology import declare_topology

__all__ = [
    "Broker",
    "ConsumerLoop",
    "Outgoing",
    "PublishFailed",
    "Publisher",
    "Refused",
    "declare_topology",
]

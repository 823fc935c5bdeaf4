"""The messaging runtime shared by the router and the adapters.

It stands below both: connections, topology declaration, a confirmed publisher and a
consumer loop. The same code drives kombu's in-memory transport (embedded mode) and
RabbitMQ, so one test body exercises both.
"""

from runtime.messaging.broker import Broker
from runtime.messaging.consumer import ConsumerLoop, Refused
from runtime.messaging.declaration import declare_topology
from runtime.messaging.publisher import Outgoing, Publisher, PublishFailed

__all__ = [
    "Broker",
    "ConsumerLoop",
    "Outgoing",
    "PublishFailed",
    "Publisher",
    "Refused",
    "declare_topology",
]

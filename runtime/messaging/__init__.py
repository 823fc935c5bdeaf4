"""The messaging runtime shared by the router and the adapters.

It stands below both: connections, topology declaration, a confirmed publisher, a
consumer loop that carries out handlers' settlements, and delayed delivery. The same
code drives kombu's in-memory transport (embedded mode) and RabbitMQ, so one test body
exercises both.
"""

from runtime.messaging.broker import Broker
from runtime.messaging.consumer import ConsumerLoop
from runtime.messaging.declaration import declare_topology
from runtime.messaging.envelope import Delivery
from runtime.messaging.publisher import Outgoing, Publisher
from runtime.messaging.settlement import PENDING, Ack, Hold, Park, RetryLater, Settlement

__all__ = [
    "PENDING",
    "Ack",
    "Broker",
    "ConsumerLoop",
    "Delivery",
    "Hold",
    "Outgoing",
    "Park",
    "Publisher",
    "RetryLater",
    "Settlement",
    "declare_topology",
]

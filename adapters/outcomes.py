"""Reports as they go on the broker: routed to the correlator, signed as their department."""

from __future__ import annotations

from collections.abc import Mapping

from contracts import topology
from contracts.messages import ItemOutcome, ItemTrouble
from runtime.messaging import Outgoing
from runtime.messaging.signing import Keyring


def signed_outcome(
    keyring: Keyring, outcome: ItemOutcome | ItemTrouble, trace: Mapping[str, str]
) -> Outgoing:
    body = outcome.model_dump_json().encode()
    message_id, correlation_id = str(outcome.message_id), str(outcome.bundle_id)
    return Outgoing(
        exchange=topology.OUTCOMES_EXCHANGE,
        routing_key=topology.outcome_routing_key(outcome.department),
        body=body,
        message_id=message_id,
        correlation_id=correlation_id,
        headers={
            **trace,
            **keyring.sign(
                outcome.department,
                body=body,
                message_id=message_id,
                correlation_id=correlation_id,
            ),
        },
    )

"""Hostile XML on every SOAP path, over real loopback HTTP: an entity bomb, an external
entity and an oversized document are refused unread — by a department's SOAP endpoint
(the simulator's parser) and by an adapter's zeep client reading an answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from zeep.exceptions import DTDForbidden, EntitiesForbidden, TransportError

from adapters.context import DepartmentClients
from adapters.errors import classify
from adapters.police.adapter import NAMESPACE, OPERATIONS, WSDL, PoliceAdapter
from adapters.police.simulator import create_app
from adapters.simulators.base import SimulatorServer
from adapters.simulators.soap import MAX_REQUEST_BYTES, SUBMIT_FIELDS, XML_MEDIA_TYPE, envelope
from adapters.testing import BILLION_LAUGHS, EXTERNAL_ENTITY, DepartmentState, FaultMode
from contracts.errors import Action, AnswerTooLarge

CAP = 1024 * 1024


@pytest.fixture
def police() -> Iterator[SimulatorServer]:
    state = DepartmentState("police", oversized_bytes=8 * CAP)
    with SimulatorServer(create_app(state), state) as server:
        yield server


# A filing that would be accepted, were its form not larger than any filing may be.
OVERSIZED_REQUEST = envelope(
    NAMESPACE,
    "SubmitApplication",
    dict.fromkeys(SUBMIT_FIELDS, "[]")
    | {
        "ServiceCode": next(iter(OPERATIONS.values())),
        "FormJson": "[" + " " * MAX_REQUEST_BYTES + "]",
    },
)


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS.encode(), EXTERNAL_ENTITY.encode(), OVERSIZED_REQUEST],
    ids=["billion_laughs", "external_entity", "oversized"],
)
def test_a_soap_endpoint_refuses_hostile_requests_unread(
    police: SimulatorServer, document: bytes
) -> None:
    answer = httpx.post(police.url, content=document, headers={"Content-Type": XML_MEDIA_TYPE})
    assert answer.status_code == 500 and b"soap:Client" in answer.content
    assert b"lollol" not in answer.content and b"root:" not in answer.content
    assert police.state.filings == {}


def _query_decision(url: str) -> Any:
    async def call() -> Any:
        clients = DepartmentClients(url, 10.0, 2, max_answer_bytes=CAP)
        try:
            service = clients.soap(WSDL, binding=PoliceAdapter.binding)
            return await service.QueryDecision(ReceiptNo="GA-1")
        finally:
            await clients.aclose()

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("fault", "refusal"),
    [
        # libxml2 ≥ 2.11 stops the bomb while parsing (its amplification guard: zeep says
        # TransportError, "invalid XML"); an older one parses it unexpanded and zeep's DTD
        # check refuses it. Either way nothing is expanded and the item fails.
        (FaultMode.BILLION_LAUGHS, DTDForbidden | TransportError),
        (FaultMode.EXTERNAL_ENTITY, DTDForbidden | EntitiesForbidden),
        (FaultMode.OVERSIZED, AnswerTooLarge),
    ],
)
def test_the_zeep_client_refuses_hostile_answers_unread(
    police: SimulatorServer, fault: FaultMode, refusal: type[Exception]
) -> None:
    police.state.set_fault(fault)
    with pytest.raises(Exception) as raised:
        _query_decision(police.url)
    assert isinstance(raised.value, refusal), repr(raised.value)
    assert classify(raised.value) is Action.FAIL  # never retried: it would come again
    assert "lollol" not in str(raised.value) and "root:" not in str(raised.value)


def test_an_answer_within_the_cap_is_read(police: SimulatorServer) -> None:
    police.state.oversized_bytes = CAP // 2
    police.state.set_fault(FaultMode.OVERSIZED)
    with pytest.raises(Exception) as raised:
        _query_decision(police.url)
    assert not isinstance(raised.value, AnswerTooLarge)  # read whole, then found unparsable

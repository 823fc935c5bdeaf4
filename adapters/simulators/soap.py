"""SOAP 1.1 department simulators for the filing service (SubmitApplication,
QueryDecision, SupplementApplication, CancelApplication) that the police and
housing-fund WSDLs both describe.

A department's `simulator.py` describes its service in a `FilingService` (its WSDL,
namespace, operation codes and certificates) and gets a real HTTP app from
`filing_app`. Requests are parsed with a parser that never loads a DTD, resolves an
entity or touches the network; answers are SOAP 1.1 envelopes, and faults are answered
as `soap:Client` (the request is wrong) or `soap:Server` (the department failed). The
state's fault mode is applied to every operation; the WSDL itself is always served.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.simulators.base import (
    BILLION_LAUGHS,
    CORRECTION_MATERIALS,
    EXTERNAL_ENTITY,
    DepartmentState,
    FaultMode,
    Filing,
    Stage,
    oversized_body,
)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XML_MEDIA_TYPE = "text/xml; charset=utf-8"
MAX_REQUEST_BYTES = 1024 * 1024  # a filing carries references to materials, never their bytes
SUBMIT_FIELDS = (
    "IdempotencyKey",
    "ServiceCode",
    "ProjectNo",
    "ApplicantName",
    "ApplicantIdType",
    "ApplicantIdNumber",
    "AreaCode",
    "FormJson",
    "PrerequisitesJson",
)


class ClientFault(Exception):
    """The request is wrong; answered as a soap:Client fault."""


@dataclass(frozen=True)
class FilingService:
    """What differs between departments that speak the filing service."""

    wsdl: Path
    namespace: str
    operations: Mapping[str, str]
    """Catalog service → department operation code (the adapter's OPERATIONS)."""
    certificate_names: Mapping[str, str]
    """Department operation code → the certificate it issues; others get `default_certificate`."""
    default_certificate: str
    certificate_prefix: str


def safe_parser() -> etree.XMLParser:
    # One per request: lxml parsers must not be shared between threads.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


async def read_capped(request: Request) -> bytes:
    """The request's body, refused as soon as it passes MAX_REQUEST_BYTES."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise ClientFault(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    return bytes(body)


def parse_call(body: bytes, namespace: str) -> tuple[str, dict[str, str]]:
    """The operation (local name of the Body's element) and its fields' text."""
    try:
        root = etree.fromstring(body, parser=safe_parser())
    except etree.XMLSyntaxError as error:
        raise ClientFault(f"the request is not XML: {error.msg}") from None
    if root.getroottree().docinfo.doctype:
        raise ClientFault("DTDs are not accepted")
    body_element = root.find(f"{{{SOAP_ENV}}}Body")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or body_element is None or len(body_element) == 0:
        raise ClientFault("expected a SOAP 1.1 Envelope with a Body")
    call = body_element[0]
    name = etree.QName(call)
    if name.namespace != namespace:
        raise ClientFault(f"unknown operation {call.tag}")
    fields = {etree.QName(child).localname: (child.text or "") for child in call}
    return name.localname, fields


def envelope(namespace: str, element: str, fields: Mapping[str, str | None]) -> bytes:
    """A SOAP 1.1 envelope whose Body holds `element` with the fields that are not None."""
    root = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "tns": namespace})
    answer = etree.SubElement(
        etree.SubElement(root, f"{{{SOAP_ENV}}}Body"), f"{{{namespace}}}{element}"
    )
    for name, value in fields.items():
        if value is not None:
            etree.SubElement(answer, f"{{{namespace}}}{name}").text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def soap_fault(code: Literal["Client", "Server"], message: str) -> Response:
    """A SOAP 1.1 fault; SOAP 1.1 answers every fault with HTTP 500."""
    root = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(root, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    body = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return Response(body, status_code=500, media_type=XML_MEDIA_TYPE)


def misbehaviour(state: DepartmentState, mode: FaultMode, namespace: str) -> Response | None:
    """The answer a fault mode gives instead of the real one; None to answer normally."""
    if mode is FaultMode.OVERSIZED:
        head = f'<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
        endless = oversized_body(head.encode(), state.oversized_bytes)
        return StreamingResponse(endless, media_type=XML_MEDIA_TYPE)
    if mode is FaultMode.DOWN:
        return soap_fault("Server", "部门系统暂时不可用（模拟）")
    if mode is FaultMode.GARBAGE:
        body = b"GARBAGE\x00" + secrets.token_bytes(64)
    elif mode is FaultMode.MALFORMED:
        whole = envelope(namespace, "QueryDecisionResponse", {"Status": "APPROVED"})
        body = whole[: len(whole) // 2]
    elif mode is FaultMode.BILLION_LAUGHS:
        body = BILLION_LAUGHS.encode()
    elif mode is FaultMode.EXTERNAL_ENTITY:
        body = EXTERNAL_ENTITY.encode()
    else:
        return None
    return Response(body, media_type=XML_MEDIA_TYPE)


def filing_app(state: DepartmentState, service: FilingService) -> Starlette:
    """The department's SOAP endpoint: GET /?wsdl for the WSDL, POST / for operations.

    Filings are made under the CATALOG service code, translated back from the operation
    code the adapter sent, so `state.verdicts` is keyed by catalog service as in the
    conformance suite; an operation code the department does not know is a Client fault.
    """
    catalog_service = {code: name for name, code in service.operations.items()}

    def filing(fields: Mapping[str, str]) -> Filing:
        found = state.find(fields.get("ReceiptNo", ""))
        if found is None:
            raise ClientFault("no application with this ReceiptNo")
        return found

    def decision(found: Filing) -> dict[str, str | None]:
        stage = found.stage()
        if stage is Stage.APPROVED:
            code = str(found.payload.get("ServiceCode", ""))
            return {
                "Status": "APPROVED",
                "CertificateName": service.certificate_names.get(code, service.default_certificate),
                "CertificateNumber": f"{service.certificate_prefix}{found.receipt_no}",
                "IssueDate": date.today().isoformat(),
            }
        if stage is Stage.CORRECTION_REQUIRED:
            return {
                "Status": "CORRECTION_REQUIRED",
                "Reason": found.reason,
                "MissingMaterialsJson": json.dumps(CORRECTION_MATERIALS, ensure_ascii=False),
            }
        reason = found.reason if stage in (Stage.DENIED, Stage.REJECTED) else None
        return {"Status": stage.value.upper(), "Reason": reason}

    def submit(fields: Mapping[str, str]) -> dict[str, str | None]:
        missing = [name for name in SUBMIT_FIELDS if not fields.get(name)]
        if missing:
            raise ClientFault(f"missing fields: {', '.join(missing)}")
        code = fields["ServiceCode"]
        if code not in catalog_service:
            raise ClientFault(f"unknown ServiceCode {code}")
        try:
            form = json.loads(fields["FormJson"])
            prerequisites = json.loads(fields["PrerequisitesJson"])
        except json.JSONDecodeError:
            raise ClientFault("FormJson and PrerequisitesJson must be JSON") from None
        payload = {**fields, "FormJson": form, "PrerequisitesJson": prerequisites}
        filed = state.file(
            fields["IdempotencyKey"],
            catalog_service[code],
            fields["ProjectNo"],
            payload,
            pre_review=fields.get("PreReview") in ("true", "1"),
        )
        return {"ReceiptNo": filed.receipt_no, "Status": "ACCEPTED"}

    def supplement(fields: Mapping[str, str]) -> dict[str, str | None]:
        try:
            supplied = {
                key: json.loads(fields[name])
                for key, name in (
                    ("prerequisites", "PrerequisitesJson"),
                    ("materials", "MaterialsJson"),
                )
                if fields.get(name)
            }
        except json.JSONDecodeError:
            raise ClientFault("PrerequisitesJson and MaterialsJson must be JSON") from None
        if not supplied:
            raise ClientFault("give PrerequisitesJson or MaterialsJson")
        found = state.supplement(fields.get("ReceiptNo", ""), **supplied)
        if found is None:
            raise ClientFault("no application with this ReceiptNo")
        # A repeated supplement (a redelivery) changes nothing and answers the same way.
        return {"Status": found.stage().value.upper()}

    def cancel(fields: Mapping[str, str]) -> dict[str, str | None]:
        receipt_no, key = fields.get("ReceiptNo"), fields.get("IdempotencyKey")
        if receipt_no and not key:
            found = state.cancel(receipt_no)
            if found is None:
                raise ClientFault("no application with this ReceiptNo")
        elif key and not receipt_no:
            found = state.cancel_by_key(key)
            if found is None:
                return {"Status": "NOT_FOUND"}  # nothing filed: nothing to withdraw
        else:
            raise ClientFault("give exactly one of ReceiptNo and IdempotencyKey")
        if not found.cancelled:
            raise ClientFault(f"application {found.receipt_no} is already decided")
        return {"Status": "CANCELLED"}

    operations: dict[str, Callable[[Mapping[str, str]], dict[str, str | None]]] = {
        "SubmitApplication": submit,
        "QueryDecision": lambda fields: decision(filing(fields)),
        "SupplementApplication": supplement,
        "CancelApplication": cancel,
    }

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            if "wsdl" not in request.query_params:
                return PlainTextResponse("GET /?wsdl for the service description", 404)
            return Response(service.wsdl.read_bytes(), media_type=XML_MEDIA_TYPE)
        fault = state.active_fault()
        await state.delay_for(fault)
        bad = misbehaviour(state, fault, service.namespace)
        if bad is not None:
            return bad
        try:
            name, fields = parse_call(await read_capped(request), service.namespace)
            if name not in operations:
                raise ClientFault(f"unknown operation {name}")
            answer = envelope(service.namespace, f"{name}Response", operations[name](fields))
        except ClientFault as error:
            return soap_fault("Client", str(error))
        return Response(answer, media_type=XML_MEDIA_TYPE)

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])])

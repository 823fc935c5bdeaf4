"""One bundle, one trace: the platform's trace context reaches intake over HTTP, is stored
with the outbox rows, and travels in AMQP headers through the relay, every adapter and the
correlator (and back through the outbox for the next dispatches); log lines carry it."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator

import httpx
import pytest
import structlog
from harness import new_project_no, running_stack
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from adapters.testing.dispatches import dispatch_for
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import Settings
from router.http.app import create_app
from runtime.logs import json_formatter
from runtime.messaging import Outgoing
from runtime.serving import ThreadedServer
from runtime.tracing import configure_tracing, handling, publishing


@pytest.fixture
def exported_spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("lianban-tests").add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the processor stays on the process's provider; it exports nothing


class _Lines(logging.Handler):
    """Every log line as production renders it, parsed back."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(json_formatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, object]]]:
    handler = _Lines()
    logging.getLogger().addHandler(handler)
    yield handler.lines
    logging.getLogger().removeHandler(handler)


def test_one_bundle_is_one_trace_across_intake_relay_adapters_and_correlator(
    settings: Settings,
    catalog: Catalog,
    exported_spans: InMemorySpanExporter,
    log_lines: list[dict[str, object]],
) -> None:
    # The platform calls with a trace of its own: the bundle must stay in it.
    trace_id, platform_span = secrets.token_hex(16), secrets.token_hex(8)
    newborn = catalog.bundle_types["newborn"]
    with running_stack(settings, catalog) as running:
        application = sample_application(newborn, new_project_no())
        receipt = running.client.post(
            "/v1/bundles",
            json=application,
            headers={
                "Idempotency-Key": application["project_no"],
                "traceparent": f"00-{trace_id}-{platform_span}-01",
            },
        ).json()
        reply = running.wait_for_reply(receipt["reply_url"])
    # Stopped: every span has ended and been exported.
    bundle_id = receipt["bundle_id"]
    finished = exported_spans.get_finished_spans()
    by_id = {format_span_id(span.context.span_id): span for span in finished}
    spans = [span for span in finished if _attribute(span, "lianban.bundle_id") == bundle_id]

    assert {format_trace_id(span.context.trace_id) for span in spans} == {trace_id}
    (intake,) = [span for span in finished if span.name == "POST /v1/bundles"]
    assert intake.parent is not None and format_span_id(intake.parent.span_id) == platform_span
    items = {item["item"] for item in reply["items"]}
    handled = _named(spans, "adapter.handle")
    applied = _named(spans, "correlator.apply")
    assert {_attribute(span, "lianban.item") for span in handled} == items
    assert {_attribute(span, "lianban.item") for span in applied} == items
    # Each hop is the child of the one before: relay → adapter → correlator → relay …
    assert {_parent(span, by_id).name for span in handled} == {"relay.publish"}
    assert {_parent(span, by_id).name for span in applied} == {"adapter.handle"}
    # The first dispatches go out under the intake request, the later ones (and the
    # reply) under the correlator's span that released them.
    hops = {"POST /v1/bundles", "correlator.apply"}
    published = _named(spans, "relay.publish")
    assert {_nearest(span, hops, by_id).name for span in published} == hops

    # Log lines of the bundle carry its trace and, while a message is handled, its ids.
    applied_lines = [line for line in log_lines if line.get("event") == "outcome.applied"]
    mine = [line for line in applied_lines if line.get("bundle_id") == bundle_id]
    assert mine and {line["trace_id"] for line in mine} == {trace_id}
    assert all(line["item"] in items and line["department"] and line["message_id"] for line in mine)
    (accepted,) = [
        line
        for line in log_lines
        if line.get("event") == "intake.accepted" and line.get("bundle_id") == bundle_id
    ]
    assert accepted["trace_id"] == trace_id


def _attribute(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def _nearest(span: ReadableSpan, names: set[str], by_id: dict[str, ReadableSpan]) -> ReadableSpan:
    """The closest ancestor of `span` with one of `names`."""
    while span.parent is not None:
        span = by_id[format_span_id(span.parent.span_id)]
        if span.name in names:
            return span
    raise AssertionError(f"no ancestor named {names}")


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    named = [span for span in spans if span.name == name]
    assert named, f"no {name} span"
    return named


def _parent(span: ReadableSpan, by_id: dict[str, ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return by_id[format_span_id(span.parent.span_id)]


def test_a_request_is_one_span_the_servers(
    catalog: Catalog, exported_spans: InMemorySpanExporter
) -> None:
    """The server's span is what a bundle's messages continue from; FastAPI's spans of
    each dependency and endpoint cost the serve process CPU per request and tell nothing."""
    server = ThreadedServer(create_app(catalog))
    server.start()
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()

    assert [span.name for span in exported_spans.get_finished_spans()] == ["GET /healthz"]


def test_each_published_message_continues_its_own_stored_trace(
    exported_spans: InMemorySpanExporter,
) -> None:
    """A batch mixes rows of several commits, some sharing a traceparent, some without."""
    first, second = (f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01" for _ in range(2))
    parents = [first, second, first, None]
    messages = [
        Outgoing("lianban.dispatch", f"dept.{n}", b"{}", f"message-{n}", "bundle")
        for n in range(len(parents))
    ]
    with publishing("relay.publish", messages, parents) as traced:
        sent = [message.headers["traceparent"] for message in traced]

    spans = {
        format_span_id(span.context.span_id): span for span in exported_spans.get_finished_spans()
    }
    for traceparent, headers in zip(parents, sent, strict=True):
        span = spans[headers.split("-")[2]]
        if traceparent is None:
            assert span.parent is None
            continue
        _, trace_id, parent_id, _ = traceparent.split("-")
        assert format_trace_id(span.context.trace_id) == trace_id
        assert span.parent is not None and format_span_id(span.parent.span_id) == parent_id
    assert len(set(sent)) == len(parents)


def test_a_message_handled_inside_another_binds_its_ids_and_gives_back_the_outer_ones() -> None:
    outer = dispatch_for("birth_household_registration", department="police")
    inner = dispatch_for("birth_household_registration", department="police").model_copy(
        update={"department": "civil_affairs"}
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="r-1")
    with handling("outer", outer, None):
        with handling("inner", inner, None):
            assert structlog.contextvars.get_contextvars()["department"] == "civil_affairs"
        assert structlog.contextvars.get_contextvars() == {
            "request_id": "r-1",
            "bundle_id": str(outer.bundle_id),
            "item": outer.item,
            "department": "police",
            "message_id": str(outer.message_id),
        }
    assert structlog.contextvars.get_contextvars() == {"request_id": "r-1"}
    structlog.contextvars.clear_contextvars()

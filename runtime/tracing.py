"""One trace per bundle, across every process it passes through (OpenTelemetry).

The W3C trace context travels with the bundle at each hop:

    platform ──HTTP traceparent──▶ intake (FastAPI's own server span) ──outbox row──▶
    relay ──AMQP traceparent──▶ adapter ──AMQP traceparent──▶ correlator ──outbox row──▶ …

An outbox row keeps the traceparent of the transaction that wrote it, so the relay's
publish continues that trace however much later it runs.

Every process installs the SDK's tracer provider, so trace and span ids exist (and go
into each log line) even when nothing is exported; exporting is chosen per process:
`none` (the default), `console` (one JSON span per line on stdout) or `otlp` (install
`lianban[otlp]`; the endpoint comes from the standard `OTEL_EXPORTER_OTLP_*` variables).

While a message is handled, its bundle id, item, department and message id are bound to
every log line (structlog context variables) and set on its span.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar
from uuid import UUID

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, format_span_id, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.typing import EventDict, WrappedLogger

from contracts.errors import ConfigurationError
from runtime.messaging.publisher import Outgoing

T = TypeVar("T")
EXPORTERS = ("none", "console", "otlp")
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent/tracestate only
_tracer = trace.get_tracer("lianban")  # follows the provider installed later


class BundleMessage(Protocol):
    """What every department message and outcome names."""

    @property
    def bundle_id(self) -> UUID: ...

    @property
    def item(self) -> str: ...

    @property
    def department(self) -> str: ...

    @property
    def message_id(self) -> UUID: ...


def configure_tracing(service_name: str, exporter: str = "none") -> TracerProvider:
    """Install this process's tracer provider (once) and add `exporter` to it."""
    if exporter not in EXPORTERS:
        raise ConfigurationError(
            f"LIANBAN_TRACES_EXPORTER={exporter!r}: choose one of {', '.join(EXPORTERS)}"
        )
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # OTEL_SERVICE_NAME, when set, names the process in place of its role.
        name = os.environ.get("OTEL_SERVICE_NAME", service_name)
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        trace.set_tracer_provider(provider)
    if exporter != "none":
        provider.add_span_processor(BatchSpanProcessor(_span_exporter(exporter)))
    return provider


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    try:  # an optional extra: imported by name so that it stays optional
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError as error:
        raise ConfigurationError(
            "LIANBAN_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'lianban[otlp]'"
        ) from error
    exporter: SpanExporter = otlp.OTLPSpanExporter()
    return exporter


def add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the active span's trace and span ids on the line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", format_span_id(context.span_id))
    return event_dict


def current_headers() -> dict[str, str]:
    """Message headers that make the receiver's span a child of the active span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def current_traceparent() -> str | None:
    """The active span's W3C traceparent: kept with an outbox row until it is published."""
    return current_headers().get("traceparent")


def headers_of(span: Span) -> dict[str, str]:
    """Message headers that make the receiver's span a child of `span`."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def parent_of(headers: Mapping[str, Any] | None) -> Context:
    """The trace context that HTTP or AMQP headers carry (none: a new trace begins)."""
    carrier = {
        key.lower(): value for key, value in (headers or {}).items() if isinstance(value, str)
    }
    return _PROPAGATOR.extract(carrier)


def _fields(message: BundleMessage) -> dict[str, str]:
    return {
        "bundle_id": str(message.bundle_id),
        "item": message.item,
        "department": message.department,
        "message_id": str(message.message_id),
    }


def start_span(name: str, message: BundleMessage, headers: Mapping[str, Any] | None) -> Span:
    """A span for handling `message`, child of the trace its headers carry; not yet active,
    for work that continues on another thread (end it when the work is done)."""
    attributes = {f"lianban.{key}": value for key, value in _fields(message).items()}
    return _tracer.start_span(
        name, context=parent_of(headers), kind=SpanKind.CONSUMER, attributes=attributes
    )


@contextmanager
def within(span: Span, message: BundleMessage) -> Iterator[Span]:
    """Make `span` active and bind the message's ids to every log line meanwhile."""
    with (
        trace.use_span(span, end_on_exit=False),
        structlog.contextvars.bound_contextvars(**_fields(message)),
    ):
        yield span


async def traced(span: Span, message: BundleMessage, work: Awaitable[T]) -> T:
    """Await `work` (on an event loop of another thread) inside `within(span, message)`."""
    with within(span, message):
        return await work


@contextmanager
def handling(
    name: str, message: BundleMessage, headers: Mapping[str, Any] | None
) -> Iterator[Span]:
    """Handle `message` in a span of its trace, with its ids on every log line; an
    exception that escapes is recorded on the span."""
    span = start_span(name, message, headers)
    try:
        with within(span, message):
            yield span
    finally:
        span.end()


@contextmanager
def publishing(
    name: str, messages: Sequence[Outgoing], parents: Sequence[str | None]
) -> Iterator[list[Outgoing]]:
    """One producer span per message, each a child of its stored traceparent (none: a new
    trace), ended when the block ends; yields the messages with their span's headers."""
    # A commit's messages share its traceparent: each parsed once. Contexts are immutable.
    contexts = {
        traceparent: parent_of({"traceparent": traceparent} if traceparent else None)
        for traceparent in set(parents)
    }
    spans = [
        _tracer.start_span(
            name,
            context=contexts[traceparent],
            kind=SpanKind.PRODUCER,
            attributes={
                "lianban.bundle_id": message.correlation_id,
                "lianban.message_id": message.message_id,
                "messaging.destination.name": message.exchange,
                "messaging.rabbitmq.destination.routing_key": message.routing_key,
            },
        )
        for message, traceparent in zip(messages, parents, strict=True)
    ]
    try:
        yield [
            dataclasses.replace(message, headers={**message.headers, **headers_of(span)})
            for message, span in zip(messages, spans, strict=True)
        ]
    except BaseException as error:
        for span in spans:
            span.set_status(trace.Status(trace.StatusCode.ERROR, repr(error)))
        raise
    finally:
        for span in spans:
            span.end()

"""Logs through structlog on standard error, personal data masked: one JSON object a line
for machines, or readable lines for people (`console`; `auto` picks it when standard error
is a terminal).

Every line passes through masking (`contracts.personal_data`): structlog events by field
and by pattern before they are rendered, and every standard-library record (zeep, httpx,
uvicorn, kombu) at creation, so that any handler — ours, uvicorn's, a test's capture —
only ever sees the masked text. Library records are rendered as JSON lines too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from contracts.personal_data import mask_fields, mask_text
from runtime.tracing import add_trace_ids


def mask_personal_data(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask ID numbers, credit codes, names and phones in every field."""
    masked: MutableMapping[str, Any] = mask_fields(event_dict)
    return dict(masked)


def _mask_rendered(_logger: WrappedLogger, _method: str, line: Any) -> str:
    # The last word: whatever a renderer made of an object is scanned once more.
    return mask_text(str(line))


class _MaskingRecordFactory:
    """Masks each standard-library record's message and traceback as it is created."""

    def __init__(self, create: Any) -> None:
        self.create = create

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.create(*args, **kwargs)
        if isinstance(record.msg, dict):
            return record  # a structlog event, masked by its own processors
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = mask_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return record


def install_record_masking() -> None:
    """Mask every standard-library log record of this process (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(factory))


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def json_formatter() -> logging.Formatter:
    """Renders every record, structlog's or a library's, as one masked JSON line."""
    return _formatter(structlog.processors.JSONRenderer(ensure_ascii=False))


def console_formatter() -> logging.Formatter:
    """Renders every record as one masked line for people: time, level, event, fields."""
    return _formatter(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))


def _formatter(renderer: Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        # structlog's own events were masked before they left the logger; masking them
        # again would mask the masked (a masked ID number is all stars), so only foreign ones.
        foreign_pre_chain=[
            *_SHARED,
            structlog.stdlib.add_logger_name,
            structlog.processors.format_exc_info,
            mask_personal_data,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
            _mask_rendered,
        ],
    )


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    """`log_format`: json, console, or auto (console when standard error is a terminal)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    install_record_masking()
    # Lines go through the logging module rather than to a file object bound now, so a
    # redirected or replaced stderr (a test's capture, a daemon's log file) is honoured.
    handler = logging.StreamHandler(sys.stderr)
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    handler.setFormatter(console_formatter() if console else json_formatter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )

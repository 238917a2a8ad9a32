"""structlog, configured once: one JSON object per line on stdout.

Events carry ids, counts, timings and outcomes only — never addresses, e-mails, phone numbers,
names or secrets (DESIGN §7). uvicorn's own records (start-up, errors) go through the same
renderer, so every line of the process is JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

__all__ = ["configure_logging"]

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _encode(event: Any, **_: Any) -> bytes:
    # Unknown objects (an exception object, a Decimal) become strings rather than a crash.
    return msgspec.json.encode(event, enc_hook=str)


def configure_logging(level: str = "INFO", *, cache: bool = True) -> None:
    """Route structlog and the standard library (uvicorn) to JSON lines on stdout.

    `cache=False` keeps loggers re-configurable, which `structlog.testing.capture_logs` needs.
    """
    numeric = _LEVELS[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_encode),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=lambda e, **_: _encode(e).decode()),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO and httpcore every socket step at DEBUG: the service's
    # own `batch.*` events already say what was sent and what came back.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))

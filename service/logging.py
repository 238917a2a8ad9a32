"""structlog, configured once: one JSON object per line on stdout.

Events carry ids, counts, timings and outcomes only — never addresses, e-mails, phone numbers,
names or secrets (DESIGN §7). uvicorn's own records (start-up, errors) go through the same
renderer, so every line of the process is JSON.

Two lines are logged per order at INFO, so the pipeline is kept short (docs/benchmarks.md):
one processor adds level and timestamp (the second's text is formatted once a second) and
renders with msgspec; `LineWriter` gathers the lines of one event-loop iteration into one `write()`
instead of a write and a flush per line.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from typing import Any, BinaryIO

import msgspec
import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["LineWriter", "configure_logging"]

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _encode(event: Any, **_: Any) -> bytes:
    # Unknown objects (an exception object, a Decimal) become strings rather than a crash.
    return msgspec.json.encode(event, enc_hook=str)


#: what structlog's `add_log_level` writes for these method names
_RENAMED = {"warn": "warning", "exception": "error"}


class _Render:
    """The whole processor chain in one call: `level`, an ISO 8601 UTC `timestamp` with
    microseconds (as structlog's `add_log_level` + `TimeStamper(fmt="iso", utc=True)` add them,
    without building a `datetime` per line: the second's text is made once a second), the
    traceback of an `exc_info`, and the JSON line."""

    __slots__ = ("_prefix", "_second", "_text")

    def __init__(self, *, text: bool = False) -> None:
        self._second = -1
        self._prefix = ""
        self._text = text  # the stdlib formatter wants str, structlog's logger bytes

    def stamp(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["level"] = _RENAMED.get(method_name, method_name)
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> bytes | str:
        if "level" not in event_dict:  # the stdlib path stamps in its pre-chain
            self.stamp(logger, method_name, event_dict)
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
        line = _encode(event_dict)
        return line.decode() if self._text else line


class LineWriter:
    """A structlog logger writing rendered lines to a binary stream.

    Inside a running event loop, lines are kept until the end of the loop's current iteration
    and then written with one `write()` + `flush()`; outside one (the CLI, start-up, a thread)
    each line is written at once. At most one iteration's lines are lost if the process is
    killed with SIGKILL; a normal exit writes them (atexit)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self._lines.append(message)
        loop = asyncio._get_running_loop()
        if loop is None:  # also writes what a loop that stopped before its flush left behind
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg

    def flush(self) -> None:
        # No lock (several threads may log: tests, uvicorn's start-up): the flag is cleared
        # before the lines are taken, so a line appended meanwhile is either taken now or
        # schedules a flush of its own; never left behind. `append` and the swap are atomic.
        self._scheduled = False
        lines, self._lines = self._lines, []
        if lines:
            lines.append(b"")
            self._stream.write(b"\n".join(lines))
            self._stream.flush()


_writers: dict[int, LineWriter] = {}


def _writer(stream: BinaryIO) -> LineWriter:
    # One writer per stream for the process: re-configuring (tests) must not leave a second
    # buffer whose lines could come out of order.
    writer = _writers.get(id(stream))
    if writer is None:
        writer = _writers[id(stream)] = LineWriter(stream)
    return writer


def configure_logging(level: str = "INFO", *, cache: bool = True) -> None:
    """Route structlog and the standard library (uvicorn) to JSON lines on stdout.

    `cache=False` keeps loggers re-configurable, which `structlog.testing.capture_logs` needs.
    """
    numeric = _LEVELS[level.upper()]
    writer = _writer(sys.stdout.buffer)
    structlog.configure(
        processors=[_Render()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_Render().stamp, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _Render(text=True)],
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

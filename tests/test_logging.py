"""The log pipeline: one JSON object per line, written once per event-loop iteration."""

from __future__ import annotations

import asyncio
import datetime as dt
import io

import msgspec
import structlog

from service.logging import LineWriter, _Render


class CountingStream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def test_render_gives_the_level_and_an_iso_utc_timestamp_like_structlog() -> None:
    before = dt.datetime.now(dt.UTC)
    line = _Render()(None, "warn", {"event": "x", "order_id": "1"})
    after = dt.datetime.now(dt.UTC)
    record = msgspec.json.decode(line)
    assert record["level"] == "warning" and record["event"] == "x" and record["order_id"] == "1"
    assert record["timestamp"].endswith("Z") and len(record["timestamp"]) == len("2026-11-28T00:54:33.890025Z")
    stamped = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert before - dt.timedelta(microseconds=1) <= stamped <= after


def test_render_formats_an_exception_and_survives_unknown_objects() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        line = _Render()(None, "exception", {"event": "x", "exc_info": exc, "value": object()})
    record = msgspec.json.decode(line)
    assert record["level"] == "error"
    assert "RuntimeError: boom" in record["exception"]
    assert record["value"].startswith("<object object")


def test_inside_a_loop_the_lines_of_one_iteration_go_out_in_one_write_in_order() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)

    async def main() -> tuple[bytes, int]:
        for n in range(50):
            writer.msg(b'{"n":%d}' % n)
        seen_before = stream.getvalue()
        await asyncio.sleep(0)  # the end of the iteration
        return seen_before, stream.writes

    seen_before, writes = asyncio.run(main())
    assert seen_before == b""  # nothing written while the iteration runs
    assert writes == 1
    assert [msgspec.json.decode(line)["n"] for line in stream.getvalue().splitlines()] == list(range(50))


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)
    writer.msg(b'{"a":1}')
    assert stream.getvalue() == b'{"a":1}\n'
    writer.msg(b'{"b":2}')
    assert stream.getvalue() == b'{"a":1}\n{"b":2}\n' and stream.writes == 2


def test_flush_writes_what_is_left_when_the_loop_stops_first() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)

    async def main() -> None:
        writer.msg(b'{"last":true}')

    asyncio.run(main())  # the loop closes after running the scheduled flush
    writer.flush()  # what atexit does; nothing twice
    assert stream.getvalue() == b'{"last":true}\n'


def test_a_structlog_logger_with_the_service_processors_writes_json_lines() -> None:
    stream = io.BytesIO()
    logger = structlog.wrap_logger(LineWriter(stream), processors=[_Render()])
    logger.info("order.buffered", order_id="1001", integration_id=3)
    record = msgspec.json.decode(stream.getvalue())
    assert record["event"] == "order.buffered" and record["level"] == "info" and record["integration_id"] == 3

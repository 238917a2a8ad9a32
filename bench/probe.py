#!/usr/bin/env python3
"""`order-bridge serve`, with timers around what can stall its event loop (diagnosis only).

Runs the unchanged service (`service.cli.main`) after wrapping, from the outside:
- the garbage collector: every collection's duration by generation (`gc.callbacks`);
- `encode_orders` (the batch's JSON), which runs synchronously on the event loop, so a webhook
  that arrives meanwhile waits (`Buffer._report` is a coroutine that yields every 10 log lines:
  a wrapper here would only time its creation, so its stalls show in the loop lag instead);
- the event loop itself: a task that asks to sleep 5 ms and records how late it wakes up.
At exit it writes a JSON summary to $PROBE_OUT. The latency scenario runs the service once
more under this probe, at the same load, to say where its tail latency comes from.

Usage: PROBE_OUT=probe.json python bench/probe.py serve --config FILE
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import service.app
import service.buffer
import service.sendcloud
from service.cli import main

TIMES: dict[str, list[float]] = {}
_gc_start = [0.0]


def _gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        TIMES.setdefault(f"gc gen{info['generation']}", []).append(time.perf_counter() - _gc_start[0])


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES.setdefault(name, []).append(time.perf_counter() - started)

    return wrapper


async def _lag_monitor(period: float = 0.005) -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(period)
        TIMES.setdefault("event loop lag (5 ms sleep)", []).append(time.perf_counter() - started - period)


_create_app = service.app.create_app


def _create_app_probed(*args: Any, **kwargs: Any) -> Any:
    app = _create_app(*args, **kwargs)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(_lag_monitor())
        async with inner(a):
            yield
        task.cancel()

    app.router.lifespan_context = lifespan
    return app


def _dump() -> None:
    out: dict[str, Any] = {}
    for name, values in sorted(TIMES.items()):
        ordered = sorted(values)
        out[name] = {
            "n": len(ordered),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3),
            "total_ms": round(sum(ordered) * 1000, 1),
            "over_5ms": sum(1 for v in ordered if v > 0.005),
            "over_20ms": sum(1 for v in ordered if v > 0.020),
        }
    with open(os.environ.get("PROBE_OUT", "probe.json"), "w") as handle:
        json.dump(out, handle, indent=1)


gc.callbacks.append(_gc)
service.sendcloud.encode_orders = _timed("encode_orders (per batch)", service.sendcloud.encode_orders)  # type: ignore[attr-defined]
service.app.create_app = _create_app_probed
atexit.register(_dump)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

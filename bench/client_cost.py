#!/usr/bin/env python3
"""CPU the service spends per Sendcloud request: `SendcloudClient.send` of one 100-order batch.

Starts the bench fake Sendcloud (rate limit off, niced on the load CPU) and, pinned to the
server CPU, sends the same 100 translated orders (as the buffer holds them: encoded JSON) a few
hundred times through the service's real client — httpx, httpcore, a keep-alive connection —
and reports this process's CPU time per request. This is the cost every batch puts on the
event loop next to the webhooks.

It found httpcore searching `sys.path` for `sniffio` on every request (the import fails when
sniffio is not installed, and a failed import is not cached): about 0.35 ms of the 1 ms a
request cost. sniffio is now a dependency; `tests/test_sendcloud_client.py` checks that a batch
imports nothing.

Usage: python bench/client_cost.py [REQUESTS]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import benchlib as bl
from orders import body_prefix, order_id, tail

from adapters import get_adapter
from adapters.sendcloud import encode_order
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.sendcloud import SendcloudClient
from service.sender import SendOutcome

HERE = Path(__file__).resolve().parent


async def measure(port: int, requests: int) -> float:
    adapter = get_adapter("shopify")
    prefix = body_prefix()
    orders = [encode_order(adapter.translate(prefix + tail(order_id(7, 1, k)), 1)) for k in range(100)]
    client = SendcloudClient(
        base_url=f"http://127.0.0.1:{port}/api/v3",
        public_key=bl.FAKE_PUBLIC,
        secret_key=bl.FAKE_SECRET,
        timeout=10.0,
        limiter=RateLimiter(requests_per_minute=bl.KEEP_UP_RPM, burst_per_second=bl.KEEP_UP_BURST),
        metrics=Metrics(),
    )
    async with client:
        for _ in range(20):  # warm-up: connection, first-use imports
            assert (await client.send(orders)).outcome is SendOutcome.ACCEPTED
        started = time.process_time()
        for _ in range(requests):
            assert (await client.send(orders)).outcome is SendOutcome.ACCEPTED
        return (time.process_time() - started) / requests


def main() -> int:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    os.sched_setaffinity(0, {int(bl.SERVER_CPU)})
    port = bl.free_port(18950)
    argv = ["nice", "-n", "19", bl.PY, str(HERE / "fake_server.py"), "--port", str(port), "--rate-limit", "off"]
    argv += ["--account", f"{bl.FAKE_PUBLIC}:{bl.FAKE_SECRET}"]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"client_cost-fake-{port}.log"
    fake = bl.start(argv, log, bl.LOAD_CPU)
    try:
        bl.wait_http(port, "/bench/requests", proc=fake)
        seconds = asyncio.run(measure(port, requests))
    finally:
        bl.stop(fake)
    print(f"Sendcloud client: {seconds * 1000:.3f} ms CPU per 100-order request ({requests} requests)")
    print("reproduce: .venv/bin/python bench/client_cost.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The benchmarks' Sendcloud: `service.fake_sendcloud.FakeSendcloud` on its own port, lean on memory.

It is the project's strict fake (Basic auth, every order validated against the Sendcloud model,
per-account rate limit of 100 requests/min and bursts of 15/s when `--rate-limit on`), served
by uvicorn like `order-bridge fake-sendcloud`, with three bench-only additions:

- several accounts (`--account PUBLIC:SECRET`, repeatable), each with its own rate limit, so
  one fake serves several service instances as separate Sendcloud accounts;
- it forgets what a benchmark does not need: after answering, a POST's parsed body is replaced
  by a small summary and an accepted order keeps only its id (the plain fake keeps every
  version of every order and every request body: gigabytes at ingest rates);
- `GET /bench/requests` returns every POST so far as JSON lines
  `[time, account, status, order_count, [integration ids], answered_time]`
  (times: this process's `time.monotonic()`, which is system-wide on Linux, the same clock the
  load generator and the service's buffer use).

Run:  python bench/fake_server.py --port 18900 --account bench:bench-key --rate-limit off
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from service.fake_sendcloud import Account, FakeSendcloud, create_app

#: one POST: monotonic time it arrived, account, status, orders in it, integration ids, answered at
Summary = tuple[float, str | None, int | None, int, list[int], float]


class BenchFake(FakeSendcloud):
    """`FakeSendcloud` that keeps a summary of each POST instead of its body and orders."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.summaries: list[Summary] = []

    async def handle_post(self, body: bytes, **headers: Any) -> Any:
        index = len(self.requests)  # handle_post appends this POST's record before its first await
        reply = await super().handle_post(body, **headers)
        record = self.requests[index]
        orders = record.body if isinstance(record.body, list) else []
        integrations: set[int] = set()
        for order in orders:
            try:
                integrations.add(int(order["order_details"]["integration"]["id"]))
            except (KeyError, TypeError, ValueError):
                continue
        if reply.status == 201:
            for order in orders:
                try:
                    key = (int(order["order_details"]["integration"]["id"]), str(order["order_id"]))
                except (KeyError, TypeError, ValueError):
                    continue
                stored = self.orders.get(key)
                if stored is not None:
                    stored.versions.clear()
                    stored.order = {"order_id": key[1], "order_number": order.get("order_number")}
        record.body = None
        self.summaries.append(
            (record.time, record.account, reply.status, record.order_count, sorted(integrations), time.monotonic())
        )
        return reply


def build(fake: BenchFake) -> Starlette:
    async def requests(request: Request) -> Response:
        start = int(request.query_params.get("since", "0"))
        return Response(msgspec.json.encode(fake.summaries[start:]), media_type="application/json")

    return Starlette(
        routes=[Route("/bench/requests", requests, methods=["GET"]), Mount("/", app=create_app(fake))],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account", action="append", default=[], help="PUBLIC:SECRET (repeatable)")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on")
    parser.add_argument("--requests-per-minute", type=int, default=100)
    parser.add_argument("--burst-per-second", type=int, default=15)
    args = parser.parse_args()
    accounts = {}
    for spec in args.account or ["bench:bench-key"]:
        public, _, secret = spec.partition(":")
        accounts[public] = Account(secret_key=secret, integration_ids=None)
    fake = BenchFake(
        accounts=accounts,
        rate_limit=args.rate_limit == "on",
        requests_per_minute=args.requests_per_minute,
        burst_per_second=args.burst_per_second,
    )
    config = uvicorn.Config(
        build(fake), host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off"
    )
    asyncio.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""What one pending order costs in memory, piece by piece (tracemalloc, in this process).

The memory scenario measures the service's RSS per pending order from the outside; this says
what that memory is. It feeds N distinct bench orders through the service's own code, as the
webhook route does, into a `service.buffer.Buffer` whose Sendcloud never answers (so every
order stays pending, in whatever form the buffer keeps it), and measures Python allocations:
1. what `Buffer.add` keeps per pending order (its store `Entry` and order representation),
2. the delivery id remembered by `SeenDeliveries` (dedupe, kept 24 h / 200,000 entries),
3. for reference, what a translated `Order` takes as Structs, had the buffer kept those.
It also prints the sizes of one order encoded as Sendcloud JSON and as msgpack.

Usage: python bench/memory_breakdown.py [N]
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import msgspec
from orders import body_prefix, order_id, tail

from adapters import get_adapter
from adapters.sendcloud import ENCODER
from service.buffer import Buffer, BufferSettings
from service.dedupe import SeenDeliveries
from service.metrics import Metrics
from service.store import StoreSettings
from service.store.memory import MemoryStore


class Unreachable:
    """A Sendcloud that never grants a token: every order stays pending."""

    async def reserve(self) -> None:
        await asyncio.Event().wait()

    async def send(self, orders: Sequence[Any], *, reserved: bool = False, still_mine: Any = None) -> Any:
        raise AssertionError("never called")


async def measure(n: int) -> list[tuple[str, float]]:
    adapter = get_adapter("shopify")
    prefix = body_prefix()
    bodies = [prefix + tail(order_id(8, 1, k)) for k in range(n)]
    settings = BufferSettings(max_pending=10 * n, compress_share=0.0)  # every order kept as a backlog is
    buffer = Buffer(
        settings, Unreachable(), MemoryStore(StoreSettings(compress_above=settings.compress_above)), Metrics()
    )
    seen = SeenDeliveries(86_400, 200_000)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    now = time.time()
    for body in bodies:  # as the webhook route: translate, add, let go of the Struct
        order = adapter.translate(body, 1)
        await buffer.add(1, "shopify", order, delivery_id=f"bench-{order.order_id}", received_at=now)
    del order
    gc.collect()
    step1 = tracemalloc.get_traced_memory()[0]
    for body in bodies:
        seen.remember(SeenDeliveries.key(1, f"bench-{body[-14:-1].decode()}"), 1_700_000_000.0)
    step2 = tracemalloc.get_traced_memory()[0]
    structs = [adapter.translate(body, 1) for body in bodies]
    step3 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert buffer.pending() == n, buffer.pending()
    del structs
    return [
        ("kept by Buffer.add per pending order (store Entry + the order as the store keeps it)", (step1 - base) / n),
        ("dedupe: (integration, delivery id) in SeenDeliveries", (step2 - step1) / n),
        ("for reference: one translated Order as Structs, if it were kept", (step3 - step2) / n),
    ]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rows = asyncio.run(measure(n))
    sample = get_adapter("shopify").translate(body_prefix() + tail(order_id(8, 1, 0)), 1)
    print(f"bytes per order, Python allocations (tracemalloc), {n:,} distinct orders fed through the service's code:")
    print()
    print("| part | bytes per order |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} |")
    print(f"| **held per pending order (the first two rows)** | **{rows[0][1] + rows[1][1]:,.0f}** |")
    print()
    print(
        f"One order encoded: {len(ENCODER.encode(sample)):,} bytes as Sendcloud JSON, "
        f"{len(msgspec.msgpack.encode(sample)):,} as msgpack."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

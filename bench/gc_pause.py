#!/usr/bin/env python3
"""How long one full garbage collection stops a service that has run for a while.

The latency scenario runs a fresh process for 23 s. A long-running service also holds, at
their caps, what it remembers about orders already handled: per lane up to 100,000 sent
versions (`MemoryStore lanes' `sent``) and up to 200,000 delivery ids (`SeenDeliveries`). A full
(generation 2) collection walks every container the collector tracks, on the event loop.

This fills the service's own stores to those caps through their real methods and times
`gc.collect()`; for comparison, the `OrderedDict` shapes they had before `service.recent.Recent`
(order_id → ((time, seq), digest), and (integration, delivery id) → expiry), which CPython
never stops tracking.

Usage: python bench/gc_pause.py [LANES]
"""

from __future__ import annotations

import gc
import sys
import time
from collections import OrderedDict

from service.dedupe import SeenDeliveries
from service.store import StoreSettings, digest
from service.store.memory import MemoryStore

SENT, SEEN = 100_000, 200_000


def full_collection_ms() -> float:
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def order_id(lane: int, k: int) -> str:
    return str(8_000_000_000_000 + lane * 1_000_000 + k)


def main() -> int:
    lanes = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    gc.freeze()  # as `order-bridge serve` does after start-up
    empty = full_collection_ms()

    memory = MemoryStore(StoreSettings(remember_sent=SENT))
    stores = [memory._lane(lane).sent for lane in range(lanes)]
    for lane, lane_sent in enumerate(stores):
        for k in range(SENT):
            lane_sent.put(order_id(lane, k), (float(k), k, digest(order_id(lane, k).encode())))
    seen = SeenDeliveries(86_400, SEEN)
    for k in range(SEEN):
        seen.remember(SeenDeliveries.key(k % lanes + 1, f"bench-{8_000_000_000_000 + k}"), 1_700_000_000.0)
    service = full_collection_ms()
    held = sum(len(lane_sent) for lane_sent in stores), len(seen)
    del stores, seen

    sent = [OrderedDict((order_id(lane, k), ((float(k), k), k)) for k in range(SENT)) for lane in range(lanes)]
    old_sent = full_collection_ms()
    old_seen = OrderedDict(((k % lanes + 1, f"bench-{8_000_000_000_000 + k}"), float(k)) for k in range(SEEN))
    old_both = full_collection_ms()
    del sent, old_seen

    print(f"full collection, Python {sys.version.split()[0]}, after gc.freeze():")
    print(f"  {empty:6.1f} ms  nothing remembered")
    print(
        f"  {service:6.1f} ms  the service's stores at their caps: {held[0]:,} sent versions in {lanes} lanes"
        f" and {held[1]:,} delivery ids (service.recent.Recent: untracked)"
    )
    print(f"  {old_sent:6.1f} ms  before: {lanes} lanes x {SENT:,} sent versions as OrderedDicts")
    print(f"  {old_both:6.1f} ms  before: ... and {SEEN:,} delivery ids as an OrderedDict of tuples")
    return 0


if __name__ == "__main__":
    sys.exit(main())

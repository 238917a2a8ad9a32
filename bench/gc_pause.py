#!/usr/bin/env python3
"""How long one full garbage collection stops a service that has run for a while.

The latency scenario runs a fresh process for 23 s. A long-running service also holds, at
their caps, what it remembers about orders already handled: per lane up to 100,000 sent
versions (`MemoryLaneStore._sent`: an OrderedDict of order_id → ((time, seq), digest)) and up to
200,000 delivery ids (`SeenDeliveries`: an OrderedDict of (integration, delivery id) → expiry).
Each full (generation 2) collection walks every entry of those OrderedDicts, on the event loop.
This builds containers of the same shapes and sizes (no service code: the shapes are copied
from service/lanes.py and service/dedupe.py at the time of writing) and times `gc.collect()`;
for comparison, the same 200,000 delivery ids in a plain dict[str, float], which CPython stops
tracking altogether.

Usage: python bench/gc_pause.py [LANES]
"""

from __future__ import annotations

import gc
import sys
import time
from collections import OrderedDict


def full_collection_ms() -> float:
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    lanes = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    empty = full_collection_ms()
    sent = [
        OrderedDict((str(8_000_000_000_000 + lane * 1_000_000 + k), ((float(k), k), k)) for k in range(100_000))
        for lane in range(lanes)
    ]
    with_sent = full_collection_ms()
    seen = OrderedDict(((k % lanes + 1, f"bench-{8_000_000_000_000 + k}"), float(k)) for k in range(200_000))
    with_seen = full_collection_ms()
    del sent, seen
    plain = {f"{k % lanes + 1}:bench-{8_000_000_000_000 + k}": float(k) for k in range(200_000)}
    with_plain = full_collection_ms()
    del plain
    print(f"full collection, Python {sys.version.split()[0]}:")
    print(f"  {empty:6.1f} ms  nothing remembered")
    print(f"  {with_sent:6.1f} ms  {lanes} lanes x 100,000 sent versions (OrderedDict, as MemoryLaneStore._sent)")
    print(f"  {with_seen:6.1f} ms  ... and 200,000 delivery ids (OrderedDict of tuples, as SeenDeliveries)")
    print(f"  {with_plain:6.1f} ms  200,000 delivery ids alone in a plain dict[str, float] (not tracked by the GC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Delivery ids seen recently, so a platform's retry of a delivery we already took is answered
`duplicate` (DESIGN §1 step 3). Bounded in time (`ttl`) and size (`max_entries`, oldest out)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["SeenDeliveries"]


class SeenDeliveries:
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()

    def seen(self, key: Hashable) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > self._clock()

    def remember(self, key: Hashable) -> None:
        now = self._clock()
        self._expiry[key] = now + self._ttl
        self._expiry.move_to_end(key)
        # Entries are in expiry order (same ttl for all): drop the expired and the overflow.
        while self._expiry:
            oldest_key, oldest_expiry = next(iter(self._expiry.items()))
            if oldest_expiry > now and len(self._expiry) <= self._max:
                break
            del self._expiry[oldest_key]

    def __len__(self) -> int:
        return len(self._expiry)

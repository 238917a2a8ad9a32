"""Delivery ids seen recently, so a platform's retry of a delivery we already took is answered
`duplicate` (DESIGN §1 step 3). Bounded in time (`ttl`) and size: at most `max_entries` ids,
always at least the newest half of them (`service.recent.Recent`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.recent import Recent

__all__ = ["SeenDeliveries"]


class SeenDeliveries:
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        #: "integration:delivery id" → expiry (a str key and a float value: see `Recent`)
        self._expiry: Recent[float] = Recent(max_entries)

    @staticmethod
    def key(integration_id: int, delivery_id: str) -> str:
        return f"{integration_id}:{delivery_id}"

    def seen(self, key: str) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > self._clock()

    def remember(self, key: str) -> None:
        self._expiry.put(key, self._clock() + self._ttl)

    def __len__(self) -> int:
        return len(self._expiry)

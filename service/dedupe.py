"""Delivery ids seen recently, so a platform's retry of a delivery we already took is answered
`duplicate` (DESIGN §1 step 3). Bounded in time (`ttl`) and size: at most `max_entries` ids,
always at least the newest half of them (`service.recent.Recent`).

Times are wall-clock POSIX seconds passed in by the caller: the store keeps the ids (with their
expiry) across restarts, so they must mean the same in the next process."""

from __future__ import annotations

from service.recent import Recent

__all__ = ["SeenDeliveries"]


class SeenDeliveries:
    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        #: "integration:delivery id" → expiry (a str key and a float value: see `Recent`)
        self._expiry: Recent[float] = Recent(max_entries)

    @staticmethod
    def key(integration_id: int, delivery_id: str) -> str:
        return f"{integration_id}:{delivery_id}"

    def seen(self, key: str, now: float) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > now

    def remember(self, key: str, now: float) -> float:
        """Remember `key` for `ttl` from `now`; returns its expiry."""
        expiry = now + self.ttl
        self._expiry.put(key, expiry)
        return expiry

    def restore(self, key: str, expiry: float) -> None:
        """Put back an id read from the store, with the expiry it was kept with."""
        self._expiry.put(key, expiry)

    def __len__(self) -> int:
        return len(self._expiry)

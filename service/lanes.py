"""What one lane (one Sendcloud integration) holds, behind a small storage interface.

`LaneStore` is the seam for a durable, shared store later (PostgreSQL): the buffer's policy in
`service.buffer` only talks to this protocol. `MemoryLaneStore` is the in-memory store: at most
one pending version per `order_id`, the versions in flight, and the versions already sent.

Versions order by the order's own update time, then by arrival (`Entry.version`). A version
older than the one pending, in flight or already sent is stale and dropped; so is a repeat: the
same update time and the same content as one of those.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from adapters.sendcloud import EncodedOrder
from service.recent import Recent

__all__ = ["AddResult", "Entry", "LaneStore", "MemoryLaneStore", "Version"]

#: (the order's `order_updated_at`, else `order_created_at`, as a POSIX timestamp; arrival number)
Version = tuple[float, int]


@dataclass(slots=True)
class Entry:
    """One version of one order, from the webhook that carried it to Sendcloud's answer."""

    integration_id: int
    platform: str
    #: the order's JSON, as it will go into a batch
    order: EncodedOrder
    version: Version
    #: the buffer clock's time at receipt: end-to-end latency and the age of the oldest order
    received_at: float
    delivery_id: str | None = None

    @property
    def order_id(self) -> str:
        return self.order.order_id


class AddResult(StrEnum):
    BUFFERED = "buffered"  # a new order in the lane
    COALESCED = "coalesced"  # replaced an older pending version of the same order
    STALE = "stale"  # older than what is pending, in flight or sent: dropped


class LaneStore(Protocol):
    """Storage of one lane. Not thread-safe; the buffer calls it from one event loop."""

    def add(self, entry: Entry) -> AddResult: ...

    def take(self, limit: int) -> list[Entry]:
        """Up to `limit` pending entries, oldest first, now in flight."""
        ...

    def restore(self, entries: Iterable[Entry]) -> int:
        """In-flight entries back to pending (a retry), unless a newer version arrived meanwhile.

        Returns how many were superseded that way (dropped for the newer pending version).
        """
        ...

    def settle(self, entries: Iterable[Entry], *, sent: bool) -> None:
        """In-flight entries done: sent (remembered against stale versions) or dead-lettered."""
        ...

    def pending(self) -> int: ...

    def in_flight(self) -> int: ...

    def oldest_received(self) -> float | None:
        """Receipt time of the oldest order not yet settled (pending or in flight)."""
        ...


def _digest(order: EncodedOrder) -> int:
    return hash(order.json)


def _not_newer(entry: Entry, version: Version, same_content: Callable[[], bool]) -> bool:
    """True when `entry` is not newer than `version`: an older update time, or the same update
    time with the same content (a repeat). The same time with other content is newer by arrival
    (WooCommerce times have one-second resolution)."""
    when, arrival = entry.version
    if when != version[0]:
        return when < version[0]
    return arrival <= version[1] or same_content()


class MemoryLaneStore:
    """`LaneStore` in memory. `remember` bounds how many sent versions are kept for staleness
    (at most that many, always at least the newest half: `service.recent.Recent`)."""

    def __init__(self, remember: int = 100_000) -> None:
        self._pending: OrderedDict[str, Entry] = OrderedDict()
        self._flying: dict[str, Entry] = {}
        #: order_id → (update time, arrival, digest) of the version sent, for staleness and
        #: repeats: a flat tuple of numbers, which the garbage collector stops tracking
        self._sent: Recent[tuple[float, int, int]] = Recent(remember)

    def add(self, entry: Entry) -> AddResult:
        order_id = entry.order_id
        sent = self._sent.get(order_id)
        if sent is not None and _not_newer(entry, (sent[0], sent[1]), lambda: _digest(entry.order) == sent[2]):
            return AddResult.STALE
        flying = self._flying.get(order_id)
        if flying is not None and _not_newer(entry, flying.version, lambda: entry.order.json == flying.order.json):
            return AddResult.STALE
        current = self._pending.get(order_id)
        if current is not None:
            if _not_newer(entry, current.version, lambda: entry.order.json == current.order.json):
                return AddResult.STALE
            # Keep the first receipt time (and place in line): the order has waited since then.
            entry.received_at = min(entry.received_at, current.received_at)
            self._pending[order_id] = entry
            return AddResult.COALESCED
        self._pending[order_id] = entry
        return AddResult.BUFFERED

    def take(self, limit: int) -> list[Entry]:
        batch: list[Entry] = []
        while self._pending and len(batch) < limit:
            _, entry = self._pending.popitem(last=False)
            self._flying[entry.order_id] = entry
            batch.append(entry)
        return batch

    def restore(self, entries: Iterable[Entry]) -> int:
        back: list[Entry] = []
        superseded = 0
        for entry in entries:
            self._flying.pop(entry.order_id, None)
            newer = self._pending.get(entry.order_id)
            if newer is not None:
                # A newer version arrived while this one was in flight: it goes instead, and
                # has been waiting since the older one arrived.
                newer.received_at = min(newer.received_at, entry.received_at)
                back.append(newer)
                superseded += 1
            else:
                back.append(entry)
        # Retried orders are the oldest: they go back to the front, in their order.
        for entry in reversed(back):
            self._pending[entry.order_id] = entry
            self._pending.move_to_end(entry.order_id, last=False)
        return superseded

    def settle(self, entries: Iterable[Entry], *, sent: bool) -> None:
        for entry in entries:
            self._flying.pop(entry.order_id, None)
            if sent:
                when, arrival = entry.version
                self._sent.put(entry.order_id, (when, arrival, _digest(entry.order)))

    def pending(self) -> int:
        return len(self._pending)

    def in_flight(self) -> int:
        return len(self._flying)

    def oldest_received(self) -> float | None:
        # Pending entries keep their place in line (coalescing keeps it, retries go to the
        # front), so the first is the oldest; at most one batch is in flight.
        times = [e.received_at for e in self._flying.values()]
        if self._pending:
            times.append(next(iter(self._pending.values())).received_at)
        return min(times) if times else None

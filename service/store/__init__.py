"""Where the buffer keeps order versions, batches in flight, sent versions, dead letters and the
ledger: the `Store` protocol, the types that cross it, and the stores behind it.

The buffer (`service.buffer`) decides *when* a lane flushes; the store decides *what* a lane
holds. Everything a store keeps is identified by values, never by Python objects, so a database
can sit behind the same calls:

- an order version by `(integration_id, order_id, version)`, where `version` is the order's own
  update time and the store's arrival number (`seq`, which the store hands out);
- a batch by its `id`, with the attempt it is;
- an order's content by `digest` (BLAKE2b of its JSON: the same in every process and after a
  restart, unlike `hash()`);
- times as wall-clock POSIX seconds (`received_at`); the buffer's timers keep the monotonic clock.

Writes are coroutines, so a store may commit before it answers: `Buffer.add` returns only once
the store has the order. Reads are plain calls on what the store keeps at hand (counts, the
oldest receipt time), because the flush loop and the metrics read them all the time.

Stores: `service.store.memory.MemoryStore` (the process's memory; everything is lost with the
process), `service.store.sqlite.SqliteStore` (one SQLite file; what committed survives a crash),
`service.store.relay.RelayStore` (the workers of `serve --workers` reaching the file their first
worker owns) and `service.store.postgres.PostgresStore` (one database, shared by replicas).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple, Protocol

import msgspec

from adapters.sendcloud import EncodedOrder

__all__ = [
    "DEFAULT_SETTINGS",
    "AddResult",
    "Arrival",
    "Batch",
    "DeadLetter",
    "Entry",
    "HistoryEvent",
    "Ledger",
    "NotFlusher",
    "Resolution",
    "Settled",
    "Settlement",
    "Store",
    "StoreOpenError",
    "StoreSettings",
    "StoreUnavailable",
    "Version",
    "VersionKey",
    "digest",
]

#: (the order's `order_updated_at`, else `order_created_at`, as a POSIX timestamp; the store's
#: arrival number). Versions of one order compare as these tuples.
Version = tuple[float, int]


class VersionKey(NamedTuple):
    """What identifies one version of one order, in this process and any other."""

    integration_id: int
    order_id: str
    version: Version


class StoreUnavailable(Exception):
    """The store could not commit (disk full, read-only, locked, corrupt): nothing of the call
    took effect. The webhook answers 503 + Retry-After; `/readyz` says so until a commit works."""


class NotFlusher(StoreUnavailable):
    """This replica does not hold the flusher lease of a store shared by replicas (any more):
    the take or settle changed nothing; the flusher that does hold it sends the lane."""


class StoreOpenError(Exception):
    """The store cannot be opened (corrupt, not a store, written by a newer version): start-up
    stops with this message, and the file is left as it is."""


def digest(order_json: bytes) -> bytes:
    """A stable 16-byte digest of an order's JSON: equal content, equal digest, in any process."""
    return hashlib.blake2b(order_json, digest_size=16).digest()


class AddResult(StrEnum):
    BUFFERED = "buffered"  # a new order in the lane
    COALESCED = "coalesced"  # replaced an older pending version of the same order
    STALE = "stale"  # older than what is pending, in flight or sent (or a repeat of it): dropped
    #: its delivery id was taken by another process sharing the store (`seen_delivery` answers
    #: for this one's): dropped, answered as a duplicate
    DUPLICATE = "duplicate"


class Arrival(NamedTuple):
    """One order version as the webhook hands it to the buffer, before the store numbers it."""

    integration_id: int
    platform: str
    #: the order's JSON (uncompressed: the store decides how to keep it)
    order: EncodedOrder
    #: the order's own update time (POSIX seconds): the first part of its version
    updated_at: float
    #: wall-clock POSIX seconds at receipt
    received_at: float
    delivery_id: str | None = None
    #: the webhook's topic and the order's number, for the order's history
    topic: str | None = None
    order_number: str | None = None
    #: the dead letter this version is a replay of (`service.admin.replay`)
    replay_of: int | None = None


class Entry(NamedTuple):
    """One stored version of one order, from the webhook that carried it to Sendcloud's answer.

    A named tuple rather than a dataclass: immutable, about 1 µs cheaper to make on the webhook
    path, and — holding only strings, numbers and bytes — untracked by the garbage collector.
    """

    integration_id: int
    platform: str
    #: the order's JSON, as it will go into a batch (possibly compressed)
    order: EncodedOrder
    updated_at: float
    #: the store's arrival number: the second part of the version, and the order of arrival
    seq: int
    #: wall-clock receipt time of the first version still waiting (coalescing keeps the earliest)
    received_at: float
    digest: bytes
    delivery_id: str | None = None

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def version(self) -> Version:
        return (self.updated_at, self.seq)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.integration_id, self.order.order_id, (self.updated_at, self.seq))


@dataclass(frozen=True, slots=True)
class Batch:
    """Up to `max_batch` entries of one lane, in flight to Sendcloud under one id."""

    id: str
    integration_id: int
    entries: tuple[Entry, ...]
    #: 1 for a lane's first try since its last success, 2 for the first retry, …
    attempt: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An order that could not be sent: why, and (when there was one) the order as it was sent."""

    integration_id: int
    platform: str
    order_id: str | None
    reason: str
    detail: str
    pointer: str | None = None
    delivery_id: str | None = None
    #: the order's JSON as it was sent, when there was one (personal data: never logged)
    order: EncodedOrder | None = None
    #: wall-clock POSIX seconds
    at: float = 0.0
    batch_id: str | None = None
    #: the webhook body the letter came from, when the adapter could not translate it: what a
    #: replay translates again (personal data: never logged; deleted with the letter)
    webhook: bytes | None = None
    #: the store's number for the letter (0 until a store keeps it): ids only grow
    id: int = 0
    order_number: str | None = None
    #: replays that failed again
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with a batch after Sendcloud's answer (made by `service.settlement.settle`).

    Every entry of the batch is in exactly one of `sent`, `dead` and `retry`.
    """

    sent: tuple[Entry, ...]
    dead: tuple[DeadLetter, ...]
    #: the entries `dead` letters were made from, in the same order
    dead_entries: tuple[Entry, ...]
    #: back to pending, to go again (unless a newer version of the order arrived meanwhile)
    retry: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Settled:
    """What applying a settlement changed besides what it said."""

    #: retried entries dropped because a newer version of their order was pending
    superseded: int
    #: dead letters pushed out of a full dead-letter store
    evicted: tuple[DeadLetter, ...] = ()
    #: the settlement's dead letters as kept, with their ids
    kept: tuple[DeadLetter, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How much a store keeps, and for how long (`[buffer]` and `[store]`, DESIGN §4)."""

    #: per lane: sent versions remembered to drop stale repeats
    remember_sent: int = 100_000
    #: unsettled orders above which new ones are kept zlib-compressed
    compress_above: int = 10_000
    dead_letter_capacity: int = 10_000
    #: seconds a dead letter (personal data) is kept
    dead_letter_retention: float = 30 * 86_400.0
    #: seconds a delivery id is remembered for dedupe, and at most how many
    dedupe_ttl: float = 86_400.0
    dedupe_max_entries: int = 200_000
    #: seconds an order's history is kept (`[store] history_days`)
    history_retention: float = 7 * 86_400.0
    #: orders whose history `MemoryStore` keeps at most (the oldest go first); a file keeps all
    history_max_orders: int = 10_000


#: every setting at its default (frozen: one value serves every store that takes the defaults)
DEFAULT_SETTINGS = StoreSettings()


@dataclass(frozen=True, slots=True)
class Ledger:
    """Where every order version the buffer accepted went. Nothing is lost while it balances."""

    accepted: int
    sent: int
    superseded: int
    dead_lettered: int
    pending: int
    #: dead letters (of any kind) a person replayed — each a new accepted version when it
    #: translates — or discarded. A dead-lettered version keeps that fate either way, so the
    #: balance above is unchanged; these say what became of the letters afterwards.
    replayed: int = 0
    discarded: int = 0

    @property
    def balanced(self) -> bool:
        return self.accepted == self.sent + self.superseded + self.dead_lettered + self.pending


class HistoryEvent(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One step in an order's history (`GET /api/orders/…`): ids, times and outcomes only —
    never the order's content (names, addresses, emails, phones). Untracked by the garbage
    collector (`gc=False`: it holds only strings and numbers), so thousands of kept histories
    add nothing to a collection's walk."""

    integration_id: int
    order_id: str
    #: wall-clock POSIX seconds
    at: float
    #: received, replayed (a dead letter back in its lane), accepted, rejected or retried (Sendcloud's
    #: answer to the batch `batch_id`, attempt `attempt`), replay_failed, discarded
    event: str
    order_number: str | None = None
    #: for `received`: buffered, coalesced, stale or duplicate
    outcome: str | None = None
    delivery_id: str | None = None
    topic: str | None = None
    batch_id: str | None = None
    attempt: int | None = None
    #: Sendcloud's id for the order (accepted)
    sendcloud_id: str | None = None
    reason: str | None = None
    pointer: str | None = None
    #: Sendcloud's detail, or the cause of a retry, quoted values scrubbed
    detail: str | None = None
    dead_letter_id: int | None = None


#: how a person resolved a dead letter
Resolution = Literal["replayed", "discarded"]


class Store(Protocol):
    """Everything the buffer keeps. Called from one event loop; writes may await a commit."""

    #: True when what the store holds outlives the process (a paused lane is then held at
    #: shutdown; with a store that forgets, it is flushed instead)
    durable: bool

    async def connect(self) -> None:
        """Before first use, in the event loop that will use the store: reach what it keeps (a
        database server); `StoreOpenError` when it cannot be used. Nothing to do for a file."""
        ...

    def flushing(self) -> bool:
        """True while this process may send the store's lanes: always, but with a store shared
        by replicas only while it holds the account's flusher lease."""
        ...

    def watch(self, changed: Callable[[Iterable[int], bool], None]) -> None:
        """Call `changed(integration_ids, took_over)` when other processes changed lanes (new
        orders, a pause or a resume) — and with every lane and `took_over` when this process
        became the flusher: it then calls `recover()` to learn which batches to hold. A store
        nobody else writes never calls it."""
        ...

    async def add(self, arrival: Arrival) -> AddResult:
        """Number the version and keep it, unless it is stale; the ledger counts it. The
        arrival's delivery id is remembered for dedupe either way, and the dead letter it
        replays (`replay_of`) leaves in the same commit, whatever the outcome."""
        ...

    async def take(self, integration_id: int, limit: int, *, batch_id: str, attempt: int) -> Batch | None:
        """Up to `limit` pending entries of a lane, oldest first, now in flight as one batch
        (None when nothing is pending). A lane has at most one batch in flight: while it has
        one whose answer was never applied, `take` returns that batch again, to be resent."""
        ...

    async def settle(self, batch: Batch, settlement: Settlement) -> Settled:
        """Apply Sendcloud's answer to the batch in flight: remember what was sent (against
        stale versions), keep the dead letters, put the retries back in front of the line."""
        ...

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> Settled:
        """Keep letters that never reached a lane (an order no valid Sendcloud order can be
        made of); returns them as kept (with their ids) and the letters evicted to make room."""
        ...

    def seen_delivery(self, integration_id: int, delivery_id: str, now: float) -> bool:
        """True when this platform delivery id was taken within the dedupe TTL (`add` and
        `remember_delivery` take one); `now` is wall-clock POSIX seconds."""
        ...

    def remember_delivery(self, integration_id: int, delivery_id: str, now: float) -> None:
        """Take a delivery id whose webhook did not reach `add` (an ignored topic, a dead letter).
        Kept without waiting for a commit: losing one to a crash only means a retry of that
        delivery is processed again, which its outcome makes harmless."""
        ...

    async def prune(self, now: float) -> int:
        """Drop what has outlived its retention: dead letters older than the retention (their
        order and webhook body are personal data), expired delivery ids and old history.
        Returns the number of dead letters dropped."""
        ...

    async def resolve_dead_letter(self, letter_id: int, how: Resolution) -> DeadLetter | None:
        """Remove a dead letter a person replayed (its order is back in a lane) or discarded;
        the ledger counts it. Returns the letter as it was, or None when there is no such id."""
        ...

    async def dead_letter_failed_again(self, letter_id: int, detail: str, at: float) -> DeadLetter | None:
        """A replay failed again: the letter stays, one attempt more, with the new detail."""
        ...

    async def dead_letter_webhook(self, letter_id: int) -> bytes | None:
        """The webhook body a letter came from (personal data: only replay reads it)."""
        ...

    async def set_paused(self, integration_id: int, paused: bool) -> None:
        """Pause a lane (it keeps accepting and holds its orders) or resume it; kept across
        restarts."""
        ...

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Add steps to orders' histories, without waiting for a commit (a history is for people
        looking into an order; it rides with the next write)."""
        ...

    async def history(
        self, integration_id: int, *, order_id: str | None = None, order_number: str | None = None
    ) -> list[HistoryEvent]:
        """An order's history, oldest first, by its id or its number (every order with that
        number, should a shop reuse one)."""
        ...

    async def recover(self) -> tuple[Batch, ...]:
        """At start: the batches that were in flight when the last process stopped, put back
        to pending so they are sent again (Sendcloud's upsert makes a resend safe)."""
        ...

    async def close(self) -> None: ...

    # ---- reads: cheap, from what the store keeps at hand

    def available(self) -> bool:
        """False after a write failed, until one succeeds again (`/readyz` reports it)."""
        ...

    def lanes(self) -> tuple[int, ...]:
        """Integration ids with anything pending or in flight."""
        ...

    def pending(self, integration_id: int) -> int: ...

    def in_flight(self, integration_id: int) -> int: ...

    def unsettled(self) -> int:
        """Pending plus in flight, over all lanes (a running count)."""
        ...

    def oldest_received(self, integration_id: int | None = None) -> float | None:
        """Receipt time of the oldest unsettled order of a lane (or of all lanes)."""
        ...

    def ledger(self) -> Ledger: ...

    # ---- reads for an admin view

    async def list_pending(self, integration_id: int, limit: int = 100) -> list[Entry]:
        """The lane's pending entries, oldest first."""
        ...

    async def batch_in_flight(self, integration_id: int) -> Batch | None: ...

    async def dead_letters(
        self,
        integration_id: int | None = None,
        limit: int | None = None,
        *,
        reason: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first: of one integration, with one reason, kept at or after
        `since`, with an id above `after` (the paging cursor)."""
        ...

    async def dead_letter(self, letter_id: int) -> DeadLetter | None: ...

    def dead_letter_count(self) -> int: ...

    def paused(self) -> frozenset[int]:
        """Integration ids whose lane is paused."""
        ...

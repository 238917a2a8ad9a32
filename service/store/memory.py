"""`MemoryStore`: the `Store` in this process's memory — everything is lost with the process.

Per lane: at most one pending version per `order_id` (in arrival order, retries in front), the
batch in flight, and the versions already sent (at most `remember_sent`, always the newest half:
`service.recent.Recent`), which make an older version, or a repeat of one, stale.

Versions order by the order's own update time, then by arrival. A version older than the one
pending, in flight or already sent is stale and dropped; so is a repeat: the same update time
and the same content (digest) as one of those. The same update time with other content is newer
by arrival (WooCommerce's times have one-second resolution).

Once `compress_above` orders are unsettled, new ones are kept zlib-compressed: a backlog that
size only builds up when Sendcloud cannot keep up, so normal operation never pays for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from service.dedupe import SeenDeliveries
from service.recent import Recent
from service.store import (
    DEFAULT_SETTINGS,
    AddResult,
    Arrival,
    Batch,
    DeadLetter,
    Entry,
    HistoryEvent,
    Ledger,
    Resolution,
    Settled,
    Settlement,
    StoreSettings,
    Version,
    digest,
)

__all__ = ["MemoryStore"]


def _not_newer(updated_at: float, seq: int, content: bytes, than: Version, than_content: bytes) -> bool:
    """True when a version is not newer than `than`: an older update time, or the same update
    time with the same content (a repeat)."""
    if updated_at != than[0]:
        return updated_at < than[0]
    return seq <= than[1] or content == than_content


@dataclass(slots=True)
class _Lane:
    pending: OrderedDict[str, Entry] = field(default_factory=OrderedDict)
    flying: Batch | None = None
    #: order_id → the entry of `flying` (a lane has at most one batch in flight)
    flying_ids: dict[str, Entry] = field(default_factory=dict)
    #: order_id → (update time, seq, digest) of the version sent: a flat tuple of atoms, which
    #: the garbage collector stops tracking
    sent: Recent[tuple[float, int, bytes]] = field(default_factory=lambda: Recent(100_000))


class MemoryStore:
    """`Store` in memory. Not thread-safe; the buffer calls it from one event loop."""

    durable = False

    def __init__(
        self,
        settings: StoreSettings = DEFAULT_SETTINGS,
        *,
        history_to: Callable[[Sequence[HistoryEvent]], None] | None = None,
    ) -> None:
        """`history_to` takes the history steps instead of this store (a file keeps them)."""
        self.settings = settings
        self._history_to = history_to
        self._deliveries = SeenDeliveries(settings.dedupe_ttl, settings.dedupe_max_entries)
        self._lanes: dict[int, _Lane] = {}
        self._seq = 0
        self._unsettled = 0
        #: id → letter, in id order (ids only grow: the oldest is first)
        self._letters: OrderedDict[int, DeadLetter] = OrderedDict()
        self._letter_seq = 0
        self._accepted = self._sent = self._superseded = self._dead_lettered = 0
        self._replayed = self._discarded = 0
        self._paused: frozenset[int] = frozenset()
        #: (integration id, order id) → its history, the least recently changed order first (tuples
        #: of untracked Structs: the garbage collector stops tracking them)
        self._history: OrderedDict[tuple[int, str], tuple[HistoryEvent, ...]] = OrderedDict()
        #: (integration id, order number) → order ids
        self._numbers: dict[tuple[int, str], set[str]] = {}

    def _lane(self, integration_id: int) -> _Lane:
        lane = self._lanes.get(integration_id)
        if lane is None:
            lane = self._lanes[integration_id] = _Lane(sent=Recent(self.settings.remember_sent))
        return lane

    # ------------------------------------------------------------ writes

    async def connect(self) -> None:
        """Nothing to reach: the orders are in this process."""

    def flushing(self) -> bool:
        return True

    def watch(self, changed: Callable[[Iterable[int], bool], None]) -> None:
        """Nobody else writes this process's memory: `changed` is never called."""

    async def add(self, arrival: Arrival) -> AddResult:
        lane = self._lane(arrival.integration_id)
        if arrival.delivery_id is not None:
            self._deliveries.remember(
                SeenDeliveries.key(arrival.integration_id, arrival.delivery_id), arrival.received_at
            )
        self._seq += 1
        result = self._add(lane, arrival, self._seq, digest(arrival.order.json))
        if arrival.replay_of is not None and self._letters.pop(arrival.replay_of, None) is not None:
            self._replayed += 1  # the letter goes with the order's arrival, whatever its outcome
        self.record_history([received(arrival, result)])
        return result

    def _add(self, lane: _Lane, arrival: Arrival, seq: int, content: bytes) -> AddResult:
        order = arrival.order
        order_id = order.order_id
        sent = lane.sent.get(order_id)
        if sent is not None and _not_newer(arrival.updated_at, seq, content, (sent[0], sent[1]), sent[2]):
            return AddResult.STALE
        flying = lane.flying_ids.get(order_id)
        if flying is not None and _not_newer(arrival.updated_at, seq, content, flying.version, flying.digest):
            return AddResult.STALE
        current = lane.pending.get(order_id)
        if current is not None and _not_newer(arrival.updated_at, seq, content, current.version, current.digest):
            return AddResult.STALE
        if self._unsettled >= self.settings.compress_above:  # Sendcloud is not keeping up: trade CPU for memory
            order = order.compress()
        entry = Entry(
            arrival.integration_id,
            arrival.platform,
            order,
            arrival.updated_at,
            seq,
            arrival.received_at,
            content,
            arrival.delivery_id,
        )
        self._accepted += 1
        if current is not None:
            # Keep the first receipt time (and place in line): the order has waited since then.
            lane.pending[order_id] = entry._replace(received_at=min(entry.received_at, current.received_at))
            self._superseded += 1
            return AddResult.COALESCED
        lane.pending[order_id] = entry
        self._unsettled += 1
        return AddResult.BUFFERED

    async def take(self, integration_id: int, limit: int, *, batch_id: str, attempt: int) -> Batch | None:
        lane = self._lane(integration_id)
        if lane.flying is not None:
            # Still in flight: its answer was never applied (a store write failed after the send,
            # or another process stopped mid-flight). It goes again before anything new.
            return lane.flying
        entries: list[Entry] = []
        while lane.pending and len(entries) < limit:
            _, entry = lane.pending.popitem(last=False)
            entries.append(entry)
        if not entries:
            return None
        batch = Batch(batch_id, integration_id, tuple(entries), attempt)
        lane.flying = batch
        lane.flying_ids = {entry.order_id: entry for entry in entries}
        return batch

    async def settle(self, batch: Batch, settlement: Settlement) -> Settled:
        lane = self._lane(batch.integration_id)
        if lane.flying is None or lane.flying.id != batch.id:
            raise RuntimeError(f"batch {batch.id} is not in flight on lane {batch.integration_id}")
        lane.flying, lane.flying_ids = None, {}
        for entry in settlement.sent:
            lane.sent.put(entry.order_id, (entry.updated_at, entry.seq, entry.digest))
        superseded = self._restore(lane, settlement.retry)
        first_letter = self._letter_seq + 1
        evicted = self._keep_letters(settlement.dead)
        kept = tuple(replace(letter, id=i) for i, letter in enumerate(settlement.dead, first_letter))
        self._sent += len(settlement.sent)
        self._dead_lettered += len(settlement.dead_entries)
        self._superseded += superseded
        self._unsettled -= len(settlement.sent) + len(settlement.dead_entries) + superseded
        return Settled(superseded, evicted, kept)

    def _restore(self, lane: _Lane, entries: Sequence[Entry]) -> int:
        """Retried entries back to the front of the line, unless a newer version is pending."""
        back: list[Entry] = []
        superseded = 0
        for entry in entries:
            newer = lane.pending.get(entry.order_id)
            if newer is not None:
                # The newer version goes instead, and has waited since the older one arrived.
                back.append(newer._replace(received_at=min(newer.received_at, entry.received_at)))
                superseded += 1
            else:
                back.append(entry)
        for entry in reversed(back):
            lane.pending[entry.order_id] = entry
            lane.pending.move_to_end(entry.order_id, last=False)
        return superseded

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> Settled:
        first = self._letter_seq + 1
        evicted = self._keep_letters(letters)
        return Settled(0, evicted, tuple(replace(letter, id=i) for i, letter in enumerate(letters, first)))

    def _keep_letters(self, letters: Sequence[DeadLetter]) -> tuple[DeadLetter, ...]:
        """Number and keep `letters` (ids `_letter_seq + 1` on, in order); returns the letters
        evicted to make room."""
        evicted: list[DeadLetter] = []
        for letter in letters:
            if len(self._letters) >= self.settings.dead_letter_capacity:
                evicted.append(self._letters.popitem(last=False)[1])
            self._letter_seq += 1
            self._letters[self._letter_seq] = replace(letter, id=self._letter_seq)
        return tuple(evicted)

    async def resolve_dead_letter(self, letter_id: int, how: Resolution) -> DeadLetter | None:
        letter = self._letters.pop(letter_id, None)
        if letter is not None:
            if how == "replayed":
                self._replayed += 1
            else:
                self._discarded += 1
        return letter

    async def dead_letter_failed_again(self, letter_id: int, detail: str, at: float) -> DeadLetter | None:
        letter = self._letters.get(letter_id)
        if letter is None:
            return None
        self._letters[letter_id] = letter = replace(letter, detail=detail, attempts=letter.attempts + 1)
        return letter

    async def dead_letter_webhook(self, letter_id: int) -> bytes | None:
        letter = self._letters.get(letter_id)
        return letter.webhook if letter is not None else None

    async def set_paused(self, integration_id: int, paused: bool) -> None:
        self._paused = self._paused | {integration_id} if paused else self._paused - {integration_id}

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        if self._history_to is not None:
            self._history_to(events)
            return
        history = self._history
        for event in events:
            key = (event.integration_id, event.order_id)
            steps = history.get(key)
            if steps is None:
                history[key] = (event,)
                if len(history) > self.settings.history_max_orders:
                    self._forget(*history.popitem(last=False))
            else:
                history[key] = (*steps, event)
                history.move_to_end(key)
            if event.order_number is not None:
                self._numbers.setdefault((event.integration_id, event.order_number), set()).add(event.order_id)

    def _forget(self, key: tuple[int, str], steps: tuple[HistoryEvent, ...]) -> None:
        for number in {step.order_number for step in steps if step.order_number is not None}:
            ids = self._numbers.get((key[0], number))
            if ids is not None:
                ids.discard(key[1])
                if not ids:
                    del self._numbers[(key[0], number)]

    def _prune_history(self, now: float) -> None:
        cutoff = now - self.settings.history_retention
        for key in [key for key, steps in self._history.items() if steps[-1].at < cutoff]:
            self._forget(key, self._history.pop(key))
        for key, steps in self._history.items():
            if steps[0].at < cutoff:
                self._history[key] = tuple(step for step in steps if step.at >= cutoff)

    async def history(
        self, integration_id: int, *, order_id: str | None = None, order_number: str | None = None
    ) -> list[HistoryEvent]:
        ids = {order_id} if order_id is not None else set()
        if order_number is not None:
            ids |= self._numbers.get((integration_id, order_number), set())
        steps = [step for i in ids for step in self._history.get((integration_id, i), ())]
        return sorted(steps, key=lambda step: step.at)

    def seen_delivery(self, integration_id: int, delivery_id: str, now: float) -> bool:
        return self._deliveries.seen(SeenDeliveries.key(integration_id, delivery_id), now)

    def remember_delivery(self, integration_id: int, delivery_id: str, now: float) -> None:
        self._deliveries.remember(SeenDeliveries.key(integration_id, delivery_id), now)

    async def prune(self, now: float) -> int:
        self._prune_history(now)
        return len(self._prune_letters(now))

    def _prune_letters(self, now: float) -> list[int]:
        """Dead letters older than the retention go; returns their ids."""
        cutoff = now - self.settings.dead_letter_retention
        dropped = [letter_id for letter_id, letter in self._letters.items() if letter.at < cutoff]
        for letter_id in dropped:
            del self._letters[letter_id]
        return dropped

    async def recover(self) -> tuple[Batch, ...]:
        """Nothing survives a process in memory: a new store has nothing to recover. Within one
        process (a store reused after the buffer stopped), batches left in flight go back."""
        recovered = []
        for lane in self._lanes.values():
            if lane.flying is not None:
                recovered.append(lane.flying)
                # retried, so a newer pending version supersedes it (and the ledger says so)
                await self.settle(lane.flying, Settlement((), (), (), lane.flying.entries))
        return tuple(recovered)

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------ reads

    def available(self) -> bool:
        return True

    def lanes(self) -> tuple[int, ...]:
        return tuple(i for i, lane in self._lanes.items() if lane.pending or lane.flying is not None)

    def pending(self, integration_id: int) -> int:
        lane = self._lanes.get(integration_id)
        return len(lane.pending) if lane is not None else 0

    def in_flight(self, integration_id: int) -> int:
        lane = self._lanes.get(integration_id)
        return len(lane.flying_ids) if lane is not None else 0

    def unsettled(self) -> int:
        return self._unsettled

    def oldest_received(self, integration_id: int | None = None) -> float | None:
        lanes = self._lanes.values() if integration_id is None else [self._lanes.get(integration_id)]
        times: list[float] = []
        for lane in lanes:
            if lane is None:
                continue
            # Pending entries keep their place in line (coalescing keeps it, retries go to the
            # front), so the first is the oldest pending one.
            times.extend(entry.received_at for entry in lane.flying_ids.values())
            if lane.pending:
                times.append(next(iter(lane.pending.values())).received_at)
        return min(times) if times else None

    def ledger(self) -> Ledger:
        return Ledger(
            self._accepted,
            self._sent,
            self._superseded,
            self._dead_lettered,
            self._unsettled,
            self._replayed,
            self._discarded,
        )

    async def list_pending(self, integration_id: int, limit: int = 100) -> list[Entry]:
        lane = self._lanes.get(integration_id)
        if lane is None:
            return []
        entries: list[Entry] = []
        for entry in lane.pending.values():
            if len(entries) >= limit:
                break
            entries.append(entry)
        return entries

    async def batch_in_flight(self, integration_id: int) -> Batch | None:
        lane = self._lanes.get(integration_id)
        return lane.flying if lane is not None else None

    async def dead_letters(
        self,
        integration_id: int | None = None,
        limit: int | None = None,
        *,
        reason: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for letter in self._letters_after(after):
            if limit is not None and len(letters) >= limit:
                break
            if (
                (integration_id is None or letter.integration_id == integration_id)
                and (reason is None or letter.reason == reason)
                and (since is None or letter.at >= since)
            ):
                letters.append(letter)
        return letters

    def _letters_after(self, after: int) -> Iterator[DeadLetter]:
        letters = iter(self._letters.values())
        if after <= 0:
            yield from letters
            return
        for letter in letters:
            if letter.id > after:
                yield letter
                break
        yield from letters

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        return self._letters.get(letter_id)

    def dead_letter_count(self) -> int:
        return len(self._letters)

    def paused(self) -> frozenset[int]:
        return self._paused


def received(arrival: Arrival, result: AddResult) -> HistoryEvent:
    """The history step of a version arriving (by webhook, or by the replay of a dead letter)."""
    return HistoryEvent(
        arrival.integration_id,
        arrival.order.order_id,
        arrival.received_at,
        "received" if arrival.replay_of is None else "replayed",
        order_number=arrival.order_number,
        outcome=str(result),
        delivery_id=arrival.delivery_id,
        topic=arrival.topic,
        dead_letter_id=arrival.replay_of,
    )

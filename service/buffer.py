"""The debounce buffer (DESIGN §5): one lane per Sendcloud integration, batches of ≤ 100.

Policy only — no HTTP and no storage in here. The buffer admits orders (`add`: closed, full,
versioned), decides when each lane flushes, supervises one task per lane, and applies what
Sendcloud answered. What a lane holds is the store's (`service.store`); what an answer means is
`service.settlement`; the Sendcloud side is a `service.sender.Sender`.

A lane flushes when it holds `max_batch` orders, when it has been quiet for `debounce_seconds`,
when its oldest order has waited `max_wait_seconds`, on demand, and at shutdown. Each lane runs
one task, so at most one flush per lane is in flight; an order that changes while its previous
version is in flight waits for the next batch. A flush first waits for a rate-limit token
(`Sender.reserve`), *then* takes the batch, so a lane held back by Sendcloud's limit keeps
absorbing orders and sends bigger batches instead of more requests.

Time comes from an injectable `service.clock.Clock`: its monotonic seconds for the timers —
debounce, backoff — and its wall clock for receipt times, which the store keeps and which must
mean the same after a restart. `Lane.due()` and `Lane.wait_time()` are pure functions of both,
and a lane passes time only through `Clock.wait`, so the timing rules are testable without
sleeping.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from adapters.sendcloud import Order, encode_order
from service.clock import Clock, SystemClock
from service.deadletters import record_dead_letters
from service.metrics import Metrics
from service.sender import Sender, SendOutcome, SendResult, backoff_delay
from service.settlement import Verdict, settle
from service.store import (
    AddResult,
    Arrival,
    Batch,
    DeadLetter,
    Entry,
    HistoryEvent,
    Ledger,
    NotFlusher,
    Settlement,
    Store,
    StoreUnavailable,
)

__all__ = ["Buffer", "BufferClosed", "BufferFull", "BufferSettings", "Lane"]

_log = structlog.get_logger("order_bridge.buffer")


class BufferFull(Exception):
    """`max_pending` orders are waiting: the webhook gets 503 + Retry-After and the shop retries."""


class BufferClosed(Exception):
    """The buffer is shutting down and takes no more orders."""


@dataclass(frozen=True, slots=True)
class BufferSettings:
    debounce_seconds: float = 1.0
    max_wait_seconds: float = 5.0
    max_batch: int = 100
    max_pending: int = 50_000
    #: share of `max_pending` above which the service reports not ready
    high_water: float = 0.9
    #: share of `max_pending` above which the store keeps new orders zlib-compressed (about
    #: 1.4 kB instead of 2.5 kB of JSON, for ~20 µs of CPU each way): a backlog that size only
    #: builds up when Sendcloud cannot keep up, so normal operation never pays for it.
    compress_share: float = 0.2
    #: how often what outlived its retention leaves the store (`Store.prune`)
    prune_seconds: float = 600.0

    @property
    def compress_above(self) -> int:
        return int(self.compress_share * self.max_pending)


@dataclass(slots=True)
class Lane:
    """One integration's timers, backoff and flush task; its orders are in the store."""

    integration_id: int
    store: Store
    settings: BufferSettings
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: monotonic time of the last order that changed the lane
    last_activity: float | None = None
    #: monotonic time before which the lane does not flush (backoff)
    not_before: float = 0.0
    attempts: int = 0
    flush_requested: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        """Held by a person (`Buffer.pause`, kept by the store — whichever replica was asked):
        takes orders, sends none, not even at shutdown when the store keeps them."""
        return self.integration_id in self.store.paused()

    def holding(self, closing: bool) -> bool:
        """Held: paused — at shutdown still held when its store keeps its orders, flushed when it
        would lose them (`memory://`) — or another replica is the flusher of a shared store."""
        return (self.paused and (self.store.durable or not closing)) or not self.store.flushing()

    def due(self, now: float, wall: float, closing: bool) -> str | None:
        """Why the lane should flush now (the trigger), or None. `now` is monotonic, `wall` POSIX."""
        pending = self.store.pending(self.integration_id)
        if pending == 0 or now < self.not_before or self.holding(closing):
            return None
        if closing:
            return "shutdown"
        if self.flush_requested:
            return "demand"
        if pending >= self.settings.max_batch:
            return "size"
        if self.last_activity is not None and now - self.last_activity >= self.settings.debounce_seconds:
            return "debounce"
        oldest = self.store.oldest_received(self.integration_id)
        if oldest is not None and wall - oldest >= self.settings.max_wait_seconds:
            return "max_wait"
        return None

    def next_flush(self, now: float, wall: float, closing: bool) -> tuple[str | None, float | None]:
        """Why the lane will flush next and in how many seconds, for people: (trigger, 0.0) when
        due now; ("backoff", s), ("debounce", s) or ("max_wait", s) when waiting; ("paused",
        None) when held by a person, ("another_replica", None) when another replica is the flusher;
        (None, None) with nothing pending."""
        trigger = self.due(now, wall, closing)
        if trigger is not None:
            return trigger, 0.0
        if self.store.pending(self.integration_id) == 0:
            return None, None
        if self.holding(closing):
            return ("paused" if self.paused else "another_replica"), None
        if now < self.not_before:
            return "backoff", self.not_before - now
        waits = self._timers(now, wall)
        if not waits:
            return None, None
        seconds, why = min(waits)
        return why, max(0.0, seconds)

    def _timers(self, now: float, wall: float) -> list[tuple[float, str]]:
        """Seconds until the debounce and the max_wait trigger fire, with their names."""
        waits = []
        if self.last_activity is not None:
            waits.append((self.last_activity + self.settings.debounce_seconds - now, "debounce"))
        oldest = self.store.oldest_received(self.integration_id)
        if oldest is not None:
            waits.append((oldest + self.settings.max_wait_seconds - wall, "max_wait"))
        return waits

    def wait_time(self, now: float, wall: float, closing: bool = False) -> float | None:
        """Seconds until `due()` can change without a new order; None: only an order (or a
        resume) can."""
        if self.store.pending(self.integration_id) == 0 or self.holding(closing):
            return None
        if now < self.not_before:
            return self.not_before - now
        waits = self._timers(now, wall)
        return max(0.0, min(waits)[0]) if waits else 0.0


def _version_time(order: Order) -> float:
    details = order.order_details
    return (details.order_updated_at or details.order_created_at).timestamp()


class Buffer:
    """All lanes, the webhook-facing `add()`, and the flush tasks."""

    def __init__(
        self,
        settings: BufferSettings,
        sender: Sender,
        store: Store,
        metrics: Metrics,
        *,
        clock: Clock | None = None,
        backoff: Callable[[int, float | None], float] = backoff_delay,
        dead_letter_capacity: int = 10_000,
        recovery_hold: float = 0.0,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.store = store
        self._sender = sender
        self._metrics = metrics
        self._backoff = backoff
        self._letter_capacity = dead_letter_capacity
        self._recovery_hold = recovery_hold
        self._lanes: dict[int, Lane] = {}
        self._closing = False
        self._closed = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None
        metrics.orders_pending.set_function(self.pending)
        metrics.oldest_pending_age.set_function(self.oldest_age)
        metrics.dead_letters_stored.set_function(store.dead_letter_count)
        metrics.export_ledger(self.ledger)
        metrics.flusher.set_function(lambda: 1.0 if store.flushing() else 0.0)
        self._store_write = metrics.store_write
        store.watch(self._changed)

    async def start(self) -> None:
        """Resume what the store holds: batches in flight when the last process stopped go back
        to pending, and every lane with orders gets its flush task.

        A lane whose batch was in flight waits `recovery_hold` seconds (the Sendcloud client's
        timeout) before it sends: the dead process's request may still be on its way or being
        processed, and landing after a newer version of one of its orders it would overwrite
        it with the older one. Past the client's timeout that request is given up."""
        now = self.clock.monotonic()
        self._hold(await self.store.recover(), now)
        for integration_id in {*self.store.lanes(), *self.store.paused()}:
            lane = self._lane(integration_id)
            # As if its orders had just arrived: the lane flushes once it has been quiet for
            # debounce_seconds (or at max_wait from their stored receipt, if that comes first).
            lane.last_activity = now
            lane.wake.set()
        self._housekeeping = asyncio.get_running_loop().create_task(self._prune(), name="store-prune")

    def _changed(self, integration_ids: Iterable[int], took_over: bool) -> None:
        """Another process changed these lanes (orders, pause, resume), or this one became the
        flusher of a shared store: their timers restart as if the orders had just arrived."""
        if self._closing:
            return
        now = self.clock.monotonic()
        for integration_id in integration_ids:
            lane = self._lane(integration_id)
            lane.last_activity = now
            lane.wake.set()
        if took_over:  # the store does not let this process flush before it recovered
            asyncio.get_running_loop().create_task(self._hold_recovered(), name="store-recover")

    async def _hold_recovered(self) -> None:
        """After a takeover: put back what the last flusher left in flight and hold those lanes
        (its request may still land), then let every lane flush."""
        while True:
            try:
                recovered = await self.store.recover()
                break
            except Exception as exc:  # the store does not flush until this succeeds: try again
                if isinstance(exc, StoreUnavailable):
                    _log.error("lane.store_unavailable", cause=str(exc))
                else:
                    _log.exception("lane.error")
                await self.clock.wait(self._closed, self._backoff(1, None))
                if self._closing:
                    return
        self._hold(recovered, self.clock.monotonic())
        for lane in self._lanes.values():
            lane.wake.set()

    def _hold(self, recovered: Sequence[Batch], now: float) -> None:
        """The lanes whose batch was in flight wait `recovery_hold` seconds from `now`."""
        for batch in recovered:
            _log.warning(
                "batch.recovered",
                integration_id=batch.integration_id,
                batch_id=batch.id,
                size=len(batch.entries),
                attempt=batch.attempt,
                hold_seconds=self._recovery_hold,
            )
            self._lane(batch.integration_id).not_before = now + self._recovery_hold

    async def _prune(self) -> None:
        """Now and every `prune_seconds`: dead letters past their retention and expired delivery
        ids leave the store (personal data is not kept longer than promised)."""
        while not self._closing:
            try:
                dropped = await self.store.prune(self.clock.wall())
            except StoreUnavailable as exc:
                _log.error("store.prune_failed", cause=str(exc))
            else:
                if dropped:
                    _log.info("deadletter.expired", count=dropped)
            await self.clock.wait(self._closed, self.settings.prune_seconds)

    # ------------------------------------------------------------ the webhook side

    async def add(
        self,
        integration_id: int,
        platform: str,
        order: Order,
        *,
        delivery_id: str | None = None,
        received_at: float | None = None,
        topic: str | None = None,
        replay_of: int | None = None,
    ) -> AddResult:
        """Buffer one order version; returns once the store has it. `received_at` is wall-clock
        seconds (default: now); `topic` and `replay_of` (a dead letter's id) go into the order's
        history. Raises `BufferFull` or `BufferClosed` (→ 503)."""
        self._admissible()
        arrival = Arrival(
            integration_id,
            platform,
            encode_order(order),
            _version_time(order),
            self.clock.wall() if received_at is None else received_at,
            delivery_id,
            topic,
            order.order_number,
            replay_of,
        )
        return await self._admit(arrival)

    def _admissible(self) -> None:
        if self._closing:
            raise BufferClosed
        if self.store.unsettled() >= self.settings.max_pending:
            raise BufferFull

    async def admit(self, arrival: Arrival) -> AddResult:
        """`add` for an order version already encoded: another worker's, relayed to this one,
        which owns the store (`service.store.relay`) — under the same rules (`BufferClosed`,
        `BufferFull`) and waking the lane the same way."""
        self._admissible()
        return await self._admit(arrival)

    async def _admit(self, arrival: Arrival) -> AddResult:
        integration_id = arrival.integration_id
        lane = self._lane(integration_id)
        began = time.perf_counter()
        result = await self.store.add(arrival)
        self._store_write.observe(time.perf_counter() - began)
        if result is AddResult.BUFFERED or result is AddResult.COALESCED:
            lane.last_activity = self.clock.monotonic()
            # The lane's task only needs waking when this order changes what it waits for: a
            # lane that was empty has no timer yet, and a full one flushes now. Otherwise its
            # timer fires at the old debounce deadline and re-reads `last_activity` — one wake
            # per debounce period instead of one per order.
            pending = self.store.pending(integration_id)
            if pending == 1 or pending >= self.settings.max_batch:
                lane.wake.set()
        return result

    def ledger(self) -> Ledger:
        """The conservation ledger of DESIGN §7, as the store counts it."""
        return self.store.ledger()

    def pending(self) -> int:
        """Orders not yet settled, in all lanes (pending and in flight)."""
        return self.store.unsettled()

    def oldest_age(self) -> float:
        """Seconds the oldest unsettled order has waited (0 when there is none)."""
        oldest = self.store.oldest_received()
        return max(0.0, self.clock.wall() - oldest) if oldest is not None else 0.0

    def above_high_water(self) -> bool:
        return self.pending() >= self.settings.high_water * self.settings.max_pending

    @property
    def running(self) -> bool:
        """True while every lane's flush task is alive (and the buffer is not closing)."""
        return not self._closing and all(
            lane.task is not None and not lane.task.done() for lane in self._lanes.values()
        )

    def flush(self, integration_id: int | None = None, *, retry_now: bool = False) -> None:
        """Flush one lane, or every lane, now: debounce ignored, the rate limit kept, and the
        backoff too unless `retry_now` (e.g. after the credentials were fixed). A paused lane is
        left alone (resuming it is the way to send; with `retry_now` its backoff is cleared for
        then); a lane that never had an order has nothing to flush; a closing buffer is flushing
        everything already."""
        if self._closing:
            return
        if integration_id is None:
            lanes = list(self._lanes.values())
        else:
            lanes = [self._lanes[integration_id]] if integration_id in self._lanes else []
        for lane in lanes:
            if retry_now:
                lane.not_before = 0.0
            if lane.paused:
                continue
            lane.flush_requested = True
            lane.wake.set()

    async def pause(self, integration_id: int, paused: bool = True) -> None:
        """Hold a lane's orders (it keeps taking new ones) or, with `paused=False`, let it flush
        again — at once: a resumed lane's backoff is cleared (a 429's Retry-After still holds in
        the rate limiter). The store keeps the choice across restarts. Raises `StoreUnavailable`,
        or `BufferClosed` once shutdown began."""
        if self._closing:
            raise BufferClosed
        await self.store.set_paused(integration_id, paused)
        lane = self._lane(integration_id)
        if not paused:
            lane.not_before = 0.0
        lane.wake.set()
        _log.warning("lane.paused" if paused else "lane.resumed", integration_id=integration_id)

    def lane(self, integration_id: int) -> Lane | None:
        """The lane of an integration, if it has ever had an order or a pause (for the admin view)."""
        return self._lanes.get(integration_id)

    def _lane(self, integration_id: int) -> Lane:
        lane = self._lanes.get(integration_id)
        if lane is None:
            lane = self._lanes[integration_id] = Lane(integration_id, self.store, self.settings)
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"lane-{integration_id}")
        return lane

    # ------------------------------------------------------------ shutdown

    async def close(self, timeout: float) -> int:
        """Flush every lane regardless of debounce, for at most `timeout` seconds.

        Returns how many orders could not be sent (0 when all went); those are logged.
        """
        self._closing = True
        self._closed.set()
        for lane in self._lanes.values():
            if lane.paused and not self.store.durable and self.store.pending(lane.integration_id):
                # held by a person, but the memory store would lose its orders with the process
                _log.warning("lane.paused_flushed_at_shutdown", integration_id=lane.integration_id)
            lane.wake.set()
        if self._housekeeping is not None:
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=timeout)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        store = self.store
        # with a store shared by replicas, a process that is not the flusher leaves its lanes'
        # orders to the one that is: none of them is this process's to send
        unsent = {i: n for i in self._lanes if store.flushing() and (n := store.pending(i) + store.in_flight(i))}
        if unsent:
            paused = sorted(i for i in unsent if self._lanes[i].paused)
            _log.error(
                "shutdown.unsent", orders=sum(unsent.values()), by_integration=unsent, paused=paused, timeout=timeout
            )
        else:
            _log.info("shutdown.flushed", lanes=len(self._lanes))
        return sum(unsent.values())

    # ------------------------------------------------------------ the flush side

    async def _run(self, lane: Lane) -> None:
        while True:
            now, wall = self.clock.monotonic(), self.clock.wall()
            trigger = lane.due(now, wall, self._closing)
            if trigger is not None:
                try:
                    await self._flush(lane, trigger)
                except NotFlusher as exc:  # the lease went elsewhere: that replica sends the lane
                    _log.warning("lane.not_flusher", integration_id=lane.integration_id, cause=str(exc))
                    lane.not_before = self.clock.monotonic() + self._backoff(1, None)
                except StoreUnavailable as exc:  # nothing changed; the lane tries again after a pause
                    _log.error("lane.store_unavailable", integration_id=lane.integration_id, cause=str(exc))
                    lane.not_before = self.clock.monotonic() + self._backoff(lane.attempts + 1, None)
                except Exception:  # a bug in settling must not stop the lane for good
                    _log.exception("lane.error", integration_id=lane.integration_id)
                    lane.not_before = self.clock.monotonic() + self._backoff(lane.attempts + 1, None)
                continue
            if self._closing and (lane.holding(True) or self.store.pending(lane.integration_id) == 0):
                return
            lane.wake.clear()
            await self.clock.wait(lane.wake, lane.wait_time(now, wall, self._closing))

    async def _flush(self, lane: Lane, trigger: str) -> None:
        await self._sender.reserve()
        lane.flush_requested = False
        batch = await self.store.take(
            lane.integration_id, self.settings.max_batch, batch_id=uuid.uuid4().hex[:16], attempt=lane.attempts + 1
        )
        if batch is None:
            return
        _log.info(
            "batch.flush",
            integration_id=lane.integration_id,
            batch_id=batch.id,
            size=len(batch.entries),
            trigger=trigger,
            attempt=batch.attempt,
            order_ids=[entry.order_id for entry in batch.entries],
        )
        self._metrics.batch_size.observe(len(batch.entries))
        try:
            # the lease is checked again at the last moment: a flusher that lost it sends nothing,
            # and its batch stays in flight for the next one (whose recovery holds it first)
            result = await self._sender.send(
                [entry.order for entry in batch.entries], reserved=True, still_mine=self.store.flushing
            )
        except Exception:  # a bug must not kill the lane or lose the batch
            _log.exception("batch.error", integration_id=lane.integration_id, batch_id=batch.id)
            result = SendResult(SendOutcome.RETRY, None, "internal_error", detail="the client raised")
        verdict = settle(batch, result, at=self.clock.wall())
        settled = await self.store.settle(batch, verdict.settlement)
        self._metrics.batches.labels(outcome=verdict.outcome).inc()
        record_dead_letters(settled.kept, settled.evicted, self._metrics, capacity=self._letter_capacity)
        self.store.record_history(answered(batch, result, verdict.settlement, settled.kept, self.clock.wall()))
        await self._report(lane, batch, result, verdict, settled.superseded)

    async def _report(self, lane: Lane, batch: Batch, result: SendResult, verdict: Verdict, superseded: int) -> None:
        """The lane's timers after a verdict, and its log lines and metrics."""
        ids = {"integration_id": lane.integration_id, "batch_id": batch.id}
        size = len(batch.entries)
        if verdict.outcome == "accepted":
            lane.attempts = 0
            _log.info("batch.accepted", **ids, size=size, status=result.status)
            self._metrics.orders_accepted.inc(size)
            wall = self.clock.wall()
            for n, entry in enumerate(batch.entries, 1):
                if n % 10 == 0:
                    await asyncio.sleep(0)  # 100 log lines in one go would hold up the webhooks
                latency = wall - entry.received_at
                self._metrics.order_end_to_end.observe(latency)
                _log.info(
                    "order.accepted",
                    **ids,
                    platform=entry.platform,
                    order_id=entry.order_id,
                    delivery_id=entry.delivery_id,
                    sendcloud_id=result.accepted.get(entry.order_id),
                    latency_ms=round(latency * 1000, 1),
                )
            return
        if verdict.flush_again:
            lane.flush_requested = True  # the rest goes again at once
            _log.warning("batch.rejected", **ids, size=size, rejected=len(verdict.settlement.dead))
        if not verdict.back_off:
            return
        lane.attempts += 1
        delay = self._backoff(lane.attempts, result.retry_after)
        lane.not_before = self.clock.monotonic() + delay
        if result.outcome is SendOutcome.MISCONFIGURED:
            _log.error(
                "sendcloud.alert", **ids, cause=result.cause, status=result.status, detail=result.detail, kept=size
            )
        _log.warning(
            "batch.retry",
            **ids,
            size=size,
            attempt=lane.attempts,
            delay=round(delay, 3),
            cause=result.cause,
            status=result.status,
            superseded=superseded,
        )


def answered(
    batch: Batch, result: SendResult, settlement: Settlement, letters: Sequence[DeadLetter], at: float
) -> list[HistoryEvent]:
    """The history step of each order of `batch` after Sendcloud's answer (one step per order and
    batch: which batch, which attempt, and the answer); `letters` are the settlement's dead
    letters as the store kept them (with their ids). No order content, and not Sendcloud's
    detail either: it may echo a value (the dead letter keeps it, for as long as letters live).
    Positional arguments, in `HistoryEvent`'s field order: a batch makes 100 of these."""
    iid, batch_id, attempt = batch.integration_id, batch.id, batch.attempt
    accepted = result.accepted
    steps = [
        HistoryEvent(iid, e.order_id, at, "accepted", None, None, None, None, batch_id, attempt, _text(accepted, e))
        for e in settlement.sent
    ]
    for letter in letters:
        order_id, pointer, letter_id = letter.order_id or "", letter.pointer, letter.id or None
        steps.append(
            HistoryEvent(
                *(iid, order_id, at, "rejected", None, None, None, None, batch_id, attempt, None, letter.reason),
                pointer=pointer,
                dead_letter_id=letter_id,
            )
        )
    cause = result.cause or str(result.outcome)
    steps += [
        HistoryEvent(iid, e.order_id, at, "retried", None, None, None, None, batch_id, attempt, detail=cause)
        for e in settlement.retry
    ]
    return steps


def _text(accepted: dict[str, int | str], entry: Entry) -> str | None:
    """Sendcloud's id for the entry's order, as text (None when the answer did not name it)."""
    found = accepted.get(entry.order_id)
    return None if found is None else str(found)

"""The debounce buffer (DESIGN §5): one lane per Sendcloud integration, batches of ≤ 100.

Policy only — no HTTP in here. A lane flushes when it holds `max_batch` orders, when it has been
quiet for `debounce_seconds`, when its oldest order has waited `max_wait_seconds`, on demand,
and at shutdown. Each lane runs one task, so at most one flush per lane is in flight; an order
that changes while its previous version is in flight waits for the next batch.

A flush first waits for a rate-limit token (`Sender.reserve`), *then* takes the batch, so a lane
held back by Sendcloud's limit keeps absorbing orders and sends bigger batches instead of more
requests. What happens after each Sendcloud answer is in `Buffer._settle` (DESIGN §6): nothing
is ever dropped on a transient or configuration error; orders Sendcloud refuses by pointer go to
the dead letters, the rest of their batch is resent at once.

Time comes from an injectable `clock` (monotonic seconds); `Lane.due()` and `Lane.wait_time()`
are pure functions of it, so the timing rules are testable without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from adapters.sendcloud import EncodedOrder, Order, encode_order
from service.deadletters import DeadLetter, DeadLetters
from service.lanes import AddResult, Entry, LaneStore, MemoryLaneStore, Version
from service.metrics import Metrics
from service.sendcloud import SendOutcome, SendResult, backoff_delay

__all__ = ["Buffer", "BufferClosed", "BufferFull", "BufferSettings", "Lane", "Ledger", "Sender"]

_log = structlog.get_logger("order_bridge.buffer")
_LEDGER_METRIC = "order_bridge_order_versions_total"


class Sender(Protocol):
    """The Sendcloud side of a flush (implemented by `service.sendcloud.SendcloudClient`)."""

    async def reserve(self) -> None:
        """Wait for a token of the account's rate limit, for the next `send(..., reserved=True)`."""
        ...

    async def send(self, orders: Sequence[EncodedOrder], *, reserved: bool = False) -> SendResult: ...


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
    #: share of `max_pending` above which new orders are kept zlib-compressed (about 1.4 kB
    #: instead of 2.5 kB of JSON, for ~20 µs of CPU each way): a backlog that size only builds
    #: up when Sendcloud cannot keep up, so normal operation never pays for it.
    compress_share: float = 0.2

    @property
    def compress_above(self) -> int:
        return int(self.compress_share * self.max_pending)


@dataclass(slots=True)
class Lane:
    """One integration's state besides its store: timers, backoff and the flush task."""

    integration_id: int
    store: LaneStore
    settings: BufferSettings
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_activity: float | None = None
    not_before: float = 0.0
    attempts: int = 0
    flush_requested: bool = False
    task: asyncio.Task[None] | None = None

    def due(self, now: float, closing: bool) -> str | None:
        """Why the lane should flush now (the trigger), or None."""
        if self.store.pending() == 0 or now < self.not_before:
            return None
        if closing:
            return "shutdown"
        if self.flush_requested:
            return "demand"
        if self.store.pending() >= self.settings.max_batch:
            return "size"
        if self.last_activity is not None and now - self.last_activity >= self.settings.debounce_seconds:
            return "debounce"
        oldest = self.store.oldest_received()
        if oldest is not None and now - oldest >= self.settings.max_wait_seconds:
            return "max_wait"
        return None

    def wait_time(self, now: float) -> float | None:
        """Seconds until `due()` can change without a new order; None: only an order can."""
        if self.store.pending() == 0:
            return None
        if now < self.not_before:
            return self.not_before - now
        deadlines = []
        if self.last_activity is not None:
            deadlines.append(self.last_activity + self.settings.debounce_seconds)
        oldest = self.store.oldest_received()
        if oldest is not None:
            deadlines.append(oldest + self.settings.max_wait_seconds)
        return max(0.0, min(deadlines) - now) if deadlines else 0.0


@dataclass(frozen=True, slots=True)
class Ledger:
    """Where every order version the buffer accepted went. Nothing is lost while it balances."""

    accepted: int
    sent: int
    superseded: int
    dead_lettered: int
    pending: int

    @property
    def balanced(self) -> bool:
        return self.accepted == self.sent + self.superseded + self.dead_lettered + self.pending


def _version_time(order: Order) -> float:
    details = order.order_details
    return (details.order_updated_at or details.order_created_at).timestamp()


class Buffer:
    """All lanes, the webhook-facing `add()`, and the flush tasks."""

    def __init__(
        self,
        settings: BufferSettings,
        sender: Sender,
        deadletters: DeadLetters,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[int, float | None], float] = backoff_delay,
        store_factory: Callable[[], LaneStore] = MemoryLaneStore,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._sender = sender
        self._deadletters = deadletters
        self._metrics = metrics
        self._backoff = backoff
        self._store_factory = store_factory
        self._lanes: dict[int, Lane] = {}
        self._seq = 0
        self._closing = False
        metrics.orders_pending.set_function(self.pending)
        metrics.oldest_pending_age.set_function(self.oldest_age)

    # ------------------------------------------------------------ the webhook side

    def add(
        self,
        integration_id: int,
        platform: str,
        order: Order,
        *,
        delivery_id: str | None = None,
        received_at: float | None = None,
    ) -> AddResult:
        """Buffer one order version. Raises `BufferFull` or `BufferClosed` (→ 503)."""
        if self._closing:
            raise BufferClosed
        unsettled = self.pending()
        if unsettled >= self.settings.max_pending:
            raise BufferFull
        now = self.clock() if received_at is None else received_at
        self._seq += 1
        version: Version = (_version_time(order), self._seq)
        lane = self._lane(integration_id)
        encoded = encode_order(order)
        if unsettled >= self.settings.compress_above:  # Sendcloud is not keeping up: trade CPU for memory
            encoded = encoded.compress()
        result = lane.store.add(Entry(integration_id, platform, encoded, version, now, delivery_id))
        if result is not AddResult.STALE:
            self._fate("accepted")
            if result is AddResult.COALESCED:
                self._fate("superseded")
            lane.last_activity = now
            # The lane's task only needs waking when this order changes what it waits for: a
            # lane that was empty has no timer yet, and a full one flushes now. Otherwise its
            # timer fires at the old debounce deadline and re-reads `last_activity` — one wake
            # per debounce period instead of one per order.
            pending = lane.store.pending()
            if pending == 1 or pending >= self.settings.max_batch:
                lane.wake.set()
        return result

    def _fate(self, fate: str, count: int = 1) -> None:
        if count:
            self._metrics.versions[fate].inc(count)

    def ledger(self) -> Ledger:
        """The conservation ledger of DESIGN §5, from the `order_versions_total` counters."""

        def count(fate: str) -> int:
            return int(self._metrics.registry.get_sample_value(_LEDGER_METRIC, {"fate": fate}) or 0)

        return Ledger(count("accepted"), count("sent"), count("superseded"), count("dead_lettered"), self.pending())

    def pending(self) -> int:
        """Orders not yet settled, in all lanes (pending and in flight)."""
        return sum(lane.store.pending() + lane.store.in_flight() for lane in self._lanes.values())

    def oldest_age(self) -> float:
        """Seconds the oldest unsettled order has waited (0 when there is none)."""
        times = [t for lane in self._lanes.values() if (t := lane.store.oldest_received()) is not None]
        return max(0.0, self.clock() - min(times)) if times else 0.0

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
        backoff too unless `retry_now` (e.g. after the credentials were fixed)."""
        lanes = self._lanes.values() if integration_id is None else [self._lanes[integration_id]]
        for lane in lanes:
            lane.flush_requested = True
            if retry_now:
                lane.not_before = 0.0
            lane.wake.set()

    def _lane(self, integration_id: int) -> Lane:
        lane = self._lanes.get(integration_id)
        if lane is None:
            lane = self._lanes[integration_id] = Lane(integration_id, self._store_factory(), self.settings)
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"lane-{integration_id}")
        return lane

    # ------------------------------------------------------------ shutdown

    async def close(self, timeout: float) -> int:
        """Flush every lane regardless of debounce, for at most `timeout` seconds.

        Returns how many orders could not be sent (0 when all went); those are logged.
        """
        self._closing = True
        for lane in self._lanes.values():
            lane.wake.set()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=timeout)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        unsent = {
            lane.integration_id: lane.store.pending() + lane.store.in_flight()
            for lane in self._lanes.values()
            if lane.store.pending() + lane.store.in_flight()
        }
        if unsent:
            _log.error("shutdown.unsent", orders=sum(unsent.values()), by_integration=unsent, timeout=timeout)
        else:
            _log.info("shutdown.flushed", lanes=len(self._lanes))
        return sum(unsent.values())

    # ------------------------------------------------------------ the flush side

    async def _run(self, lane: Lane) -> None:
        while True:
            now = self.clock()
            trigger = lane.due(now, self._closing)
            if trigger is not None:
                try:
                    await self._flush(lane, trigger)
                except Exception:  # a bug in settling must not stop the lane for good
                    _log.exception("lane.error", integration_id=lane.integration_id)
                    lane.not_before = self.clock() + self._backoff(lane.attempts + 1, None)
                continue
            if self._closing and lane.store.pending() == 0:
                return
            lane.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), lane.wait_time(now))

    async def _flush(self, lane: Lane, trigger: str) -> None:
        await self._sender.reserve()
        batch = lane.store.take(self.settings.max_batch)
        lane.flush_requested = False
        if not batch:
            return
        batch_id = uuid.uuid4().hex[:16]
        _log.info(
            "batch.flush",
            integration_id=lane.integration_id,
            batch_id=batch_id,
            size=len(batch),
            trigger=trigger,
            attempt=lane.attempts + 1,
            order_ids=[entry.order_id for entry in batch],
        )
        self._metrics.batch_size.observe(len(batch))
        try:
            result = await self._sender.send([entry.order for entry in batch], reserved=True)
        except Exception:  # a bug must not kill the lane or lose the batch
            _log.exception("batch.error", integration_id=lane.integration_id, batch_id=batch_id)
            result = SendResult(SendOutcome.RETRY, None, "internal_error", detail="the client raised")
        await self._settle(lane, batch, batch_id, result)

    async def _settle(self, lane: Lane, batch: list[Entry], batch_id: str, result: SendResult) -> None:
        now = self.clock()
        ids = {"integration_id": lane.integration_id, "batch_id": batch_id}
        if result.outcome is SendOutcome.ACCEPTED:
            lane.attempts = 0
            lane.store.settle(batch, sent=True)
            self._fate("sent", len(batch))
            self._metrics.batches.labels(outcome="accepted").inc()
            _log.info("batch.accepted", **ids, size=len(batch), status=result.status)
            self._metrics.orders_accepted.inc(len(batch))
            for n, entry in enumerate(batch, 1):
                if n % 10 == 0:
                    await asyncio.sleep(0)  # 100 log lines in one go would hold up the webhooks
                latency = now - entry.received_at
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
        if result.outcome is SendOutcome.REJECTED:
            refused = [(batch[index], errors) for index, errors in result.rejected.items() if 0 <= index < len(batch)]
            for entry, errors in refused:
                self._deadletters.add(
                    DeadLetter(
                        integration_id=entry.integration_id,
                        platform=entry.platform,
                        order_id=entry.order_id,
                        reason="sendcloud_rejected",
                        detail="; ".join(error.detail for error in errors),
                        pointer=errors[0].pointer if errors else None,
                        delivery_id=entry.delivery_id,
                        order=entry.order,
                    ),
                    batch_id=batch_id,
                )
            refused_ids = {id(entry) for entry, _ in refused}
            lane.store.settle([entry for entry, _ in refused], sent=False)
            self._fate("dead_lettered", len(refused))
            self._fate("superseded", lane.store.restore([entry for entry in batch if id(entry) not in refused_ids]))
            lane.flush_requested = True  # the rest goes again at once
            self._metrics.batches.labels(outcome="rejected").inc()
            _log.warning("batch.rejected", **ids, size=len(batch), rejected=len(refused))
            return
        self._fate("superseded", lane.store.restore(batch))
        lane.attempts += 1
        delay = self._backoff(lane.attempts, result.retry_after)
        lane.not_before = now + delay
        outcome = "misconfigured" if result.outcome is SendOutcome.MISCONFIGURED else "retried"
        self._metrics.batches.labels(outcome=outcome).inc()
        if result.outcome is SendOutcome.MISCONFIGURED:
            _log.error(
                "sendcloud.alert",
                **ids,
                cause=result.cause,
                status=result.status,
                detail=result.detail,
                kept=len(batch),
            )
        _log.warning(
            "batch.retry",
            **ids,
            size=len(batch),
            attempt=lane.attempts,
            delay=round(delay, 3),
            cause=result.cause,
            status=result.status,
        )

"""The debounce buffer: lanes, coalescing, staleness, triggers and what each Sendcloud answer does.

Every timing rule runs on `tests.fakeclock.FakeClock`: the test moves time and the lane's timers
fire exactly then; nothing here sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from adapters.sendcloud import EncodedOrder, Order, encode_order, encode_orders
from service.buffer import Buffer, BufferClosed, BufferFull, BufferSettings, Lane
from service.metrics import Metrics
from service.sender import Rejection, SendOutcome, SendResult
from service.settlement import settle
from service.store import AddResult, Batch, Entry, Settlement, digest
from service.store.memory import MemoryStore
from service.store.sqlite import SqliteStore
from tests.fakeclock import WALL_START, FakeClock
from tests.stores import StoreFactory
from tests.versions import T0, arrival, order


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def updated_at(sent: EncodedOrder) -> datetime | None:
    """The update time of an order as the buffer handed it to the sender."""
    return msgspec.json.decode(sent.json, type=Order).order_details.order_updated_at


def accepted(orders: Sequence[EncodedOrder]) -> SendResult:
    return SendResult(SendOutcome.ACCEPTED, 201, "201", accepted={o.order_id: n for n, o in enumerate(orders, 1)})


class ScriptedSender:
    """A Sender that records batches and answers from a script (default: accept everything).

    With `hold=True` each send waits until the test calls `release()`: a batch stays in flight
    for exactly as long as the test wants.
    """

    def __init__(self, *answers: SendResult | None, hold: bool = False) -> None:
        self.answers = list(answers)
        self.batches: list[list[EncodedOrder]] = []
        self.reserved = 0
        self.hold = hold
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def reserve(self) -> None:
        self.reserved += 1

    async def send(
        self, orders: Sequence[EncodedOrder], *, reserved: bool = False, still_mine: Callable[[], bool] | None = None
    ) -> SendResult:
        assert reserved, "the buffer reserves a token before every send"
        self.batches.append(list(orders))
        if self.hold:
            await self._released.wait()
            self._released.clear()
        answer = self.answers.pop(0) if self.answers else None
        return answer if answer is not None else accepted(orders)


async def make_buffer(
    new_store: StoreFactory, sender: ScriptedSender, **settings: float
) -> tuple[Buffer, MemoryStore | SqliteStore, Metrics, FakeClock]:
    metrics = Metrics()
    values = {"debounce_seconds": 1.0, "max_wait_seconds": 5.0, "max_batch": 100, "max_pending": 1000, **settings}
    buffer_settings = BufferSettings(**values)  # type: ignore[arg-type]
    store = await new_store(compress_above=buffer_settings.compress_above, dead_letter_capacity=100)
    clock = FakeClock(busy=getattr(store, "writing", None))
    buffer = Buffer(
        buffer_settings,
        sender,
        store,
        metrics,
        clock=clock,
        backoff=lambda attempt, retry_after: retry_after if retry_after is not None else 1.0,
    )
    await buffer.start()  # as the service does: a shared store flushes only once it recovered
    return buffer, store, metrics, clock


# ---------------------------------------------------------------- helpers


# ---------------------------------------------------------------- settlement (pure)


def _batch(*names: str) -> Batch:
    entries = tuple(
        Entry(7, "shopify", encode_order(order(name)), 0.0, n, 1.0, digest(b"x"), f"d-{name}")
        for n, name in enumerate(names, 1)
    )
    return Batch("b1", 7, entries, 1)


def test_settle_accepted_sends_everything() -> None:
    batch = _batch("a", "b")
    verdict = settle(batch, accepted([e.order for e in batch.entries]), at=5.0)
    assert verdict.settlement == Settlement(batch.entries, (), (), ())
    assert (verdict.outcome, verdict.back_off, verdict.flush_again) == ("accepted", False, False)


def test_settle_rejected_dead_letters_exactly_the_named_orders() -> None:
    """Indexes out of range are ignored; the dead letters carry pointer, detail, batch and time."""
    batch = _batch("a", "b", "c")
    result = SendResult(
        SendOutcome.REJECTED,
        400,
        "400",
        rejected={2: [Rejection("/data/attributes/[2]/x", "invalid", "bad x")], 9: [Rejection("/p", "c", "d")]},
    )
    verdict = settle(batch, result, at=5.0)
    (letter,) = verdict.settlement.dead
    assert (letter.order_id, letter.pointer, letter.detail, letter.batch_id, letter.at) == (
        "c",
        "/data/attributes/[2]/x",
        "bad x",
        "b1",
        5.0,
    )
    assert letter.delivery_id == "d-c" and letter.order == batch.entries[2].order
    assert verdict.settlement.dead_entries == (batch.entries[2],)
    assert verdict.settlement.retry == batch.entries[:2] and verdict.settlement.sent == ()
    assert (verdict.outcome, verdict.back_off, verdict.flush_again) == ("rejected", False, True)


@pytest.mark.parametrize(
    ("outcome", "label"), [(SendOutcome.RETRY, "retried"), (SendOutcome.MISCONFIGURED, "misconfigured")]
)
def test_settle_transient_and_misconfigured_keep_the_whole_batch(outcome: SendOutcome, label: str) -> None:
    batch = _batch("a", "b")
    verdict = settle(batch, SendResult(outcome, 503, "503"), at=5.0)
    assert verdict.settlement == Settlement((), (), (), batch.entries)
    assert (verdict.outcome, verdict.back_off, verdict.flush_again) == (label, True, False)


# ---------------------------------------------------------------- triggers (pure, fake times)


async def lane_with(*received: float, last: float | None = None, **settings: float) -> Lane:
    """A lane whose orders arrived at `received` (seconds; monotonic and wall offsets alike)."""
    values = {"debounce_seconds": 1.0, "max_wait_seconds": 5.0, "max_batch": 3, **settings}
    lane = Lane(7, MemoryStore(), BufferSettings(**values))  # type: ignore[arg-type]
    for n, at in enumerate(received):
        await lane.store.add(arrival(f"o{n}", received=WALL_START + at))
    lane.last_activity = last if last is not None else (max(received) if received else None)
    return lane


def due(lane: Lane, now: float, closing: bool = False) -> str | None:
    return lane.due(now, WALL_START + now, closing)


@pytest.mark.anyio
async def test_lane_triggers() -> None:
    """Size at once, debounce after quiet, max_wait for a busy lane, demand and shutdown; none when empty."""
    assert due(await lane_with(), 100.0) is None
    assert due(await lane_with(0.0, 0.1, 0.2), 0.2) == "size"
    assert due(await lane_with(0.0), 0.5) is None
    assert due(await lane_with(0.0), 1.0) == "debounce"
    busy = await lane_with(0.0, last=4.9)
    assert due(busy, 4.95) is None
    assert due(busy, 5.0) == "max_wait"
    assert due(await lane_with(0.0), 0.1, closing=True) == "shutdown"
    demanded = await lane_with(0.0)
    demanded.flush_requested = True
    assert due(demanded, 0.1) == "demand"


@pytest.mark.anyio
async def test_lane_backoff_holds_every_trigger() -> None:
    """While backing off, not even size, demand or shutdown flush; wait_time points at its end."""
    lane = await lane_with(0.0, 0.1, 0.2)
    lane.not_before = 10.0
    lane.flush_requested = True
    assert due(lane, 9.9, closing=True) is None
    assert lane.wait_time(9.0, WALL_START + 9.0) == pytest.approx(1.0)
    assert due(lane, 10.0, closing=True) == "shutdown"


@pytest.mark.anyio
async def test_lane_wait_time_is_the_nearest_deadline() -> None:
    """The runner sleeps until the debounce or max_wait deadline, whichever comes first."""
    assert (await lane_with()).wait_time(0.0, WALL_START) is None
    assert (await lane_with(0.0)).wait_time(0.25, WALL_START + 0.25) == pytest.approx(0.75)
    assert (await lane_with(0.0, last=4.5)).wait_time(4.6, WALL_START + 4.6) == pytest.approx(0.4)


# ---------------------------------------------------------------- the running buffer, on a fake clock


@pytest.mark.anyio
async def test_debounce_coalesces_updates_into_one_batch(new_store: StoreFactory) -> None:
    """Five versions of one order and two other orders become one batch with the newest version,
    sent when the lane has been quiet for debounce_seconds — not a moment before."""
    sender = ScriptedSender()
    buffer, _, metrics, clock = await make_buffer(new_store, sender)
    for minute in range(5):
        await buffer.add(7, "shopify", order("a", minute))
        await clock.advance(0.5)  # each order restarts the debounce
    await buffer.add(7, "shopify", order("b"))
    await buffer.add(7, "shopify", order("c"))
    await clock.advance(0.99)
    assert sender.batches == []
    await clock.advance(0.01)
    assert len(sender.batches) == 1
    sent_orders = {o.order_id: o for o in sender.batches[0]}
    assert sorted(sent_orders) == ["a", "b", "c"]
    assert updated_at(sent_orders["a"]) == T0 + timedelta(minutes=4)
    assert metrics.registry.get_sample_value("order_bridge_orders_accepted_total") == 3
    await buffer.close(1)


@pytest.mark.anyio
async def test_a_busy_lane_flushes_at_max_wait(new_store: StoreFactory) -> None:
    """Orders every 0.5 s never leave a second of quiet: the lane goes when its oldest has waited 5 s."""
    sender = ScriptedSender()
    buffer, _, _, clock = await make_buffer(new_store, sender)
    for n in range(9):
        await buffer.add(7, "shopify", order(f"o{n}"))
        await clock.advance(0.5)
    assert sender.batches == []  # 4.5 s
    await buffer.add(7, "shopify", order("o9"))
    await clock.advance(0.5)
    assert [len(b) for b in sender.batches] == [10]
    await buffer.close(1)


@pytest.mark.anyio
async def test_full_lane_flushes_at_once_in_batches_of_max(new_store: StoreFactory) -> None:
    """250 orders leave as 100 + 100 at once, the last 50 after the debounce."""
    sender = ScriptedSender()
    buffer, _, _, clock = await make_buffer(new_store, sender)
    for n in range(250):
        await buffer.add(7, "shopify", order(f"o{n}"))
    await clock.idle()
    assert [len(b) for b in sender.batches] == [100, 100]
    await clock.advance(1.0)
    assert [len(b) for b in sender.batches] == [100, 100, 50]
    assert [o.order_id for b in sender.batches for o in b] == [f"o{n}" for n in range(250)]
    await buffer.close(1)


@pytest.mark.anyio
async def test_lanes_are_per_integration(new_store: StoreFactory) -> None:
    """Orders of two integrations never share a batch."""
    sender = ScriptedSender()
    buffer, _, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a"))
    await buffer.add(8, "shopify", order("b"))
    await clock.advance(1.0)
    assert sorted(len(b) for b in sender.batches) == [1, 1]
    await buffer.close(1)


@pytest.mark.anyio
async def test_update_during_flight_goes_in_the_next_batch_never_concurrently(new_store: StoreFactory) -> None:
    """A version that arrives while its order is in flight waits; one flush per lane at a time."""
    sender = ScriptedSender(hold=True)
    buffer, _, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a", 1))
    await clock.advance(1.0)  # flushed, in flight until released
    assert len(sender.batches) == 1
    assert await buffer.add(7, "shopify", order("a", 0)) is AddResult.STALE  # older than the one in flight
    assert await buffer.add(7, "shopify", order("a", 2)) is AddResult.BUFFERED
    await clock.advance(5.0)
    assert len(sender.batches) == 1  # never a second flush while the first is in flight
    sender.release()
    await clock.advance(1.0)
    sender.release()
    await clock.idle()
    versions = [updated_at(b[0]) for b in sender.batches]
    assert versions == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert buffer.pending() == 0
    await buffer.close(1)


@pytest.mark.anyio
async def test_retry_keeps_orders_and_merges_newer_versions(new_store: StoreFactory) -> None:
    """A 429 keeps the batch for its Retry-After; a version that arrives meanwhile replaces it."""
    retry = SendResult(SendOutcome.RETRY, 429, "rate_limited", retry_after=30.0)
    sender = ScriptedSender(retry)
    buffer, _, metrics, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a", 1))
    await buffer.add(7, "shopify", order("b", 1))
    with capture_logs() as logs:
        await clock.advance(1.0)
        await buffer.add(7, "shopify", order("a", 2))
        await clock.advance(29.9)
        assert len(sender.batches) == 1  # Retry-After holds the lane
        await clock.advance(0.1)
    assert len(sender.batches) == 2
    final = {o.order_id: updated_at(o) for o in sender.batches[1]}
    assert final == {"a": T0 + timedelta(minutes=2), "b": T0 + timedelta(minutes=1)}
    retries = [e for e in logs if e["event"] == "batch.retry"]
    assert retries and retries[0]["cause"] == "rate_limited" and retries[0]["delay"] == 30.0
    assert metrics.registry.get_sample_value("order_bridge_batches_total", {"outcome": "retried"}) == 1
    await buffer.close(1)


@pytest.mark.anyio
async def test_rejected_orders_are_dead_lettered_the_rest_resent_at_once(new_store: StoreFactory) -> None:
    """A 400 naming orders [0] and [2] dead-letters exactly those; the others go again immediately."""
    rejected = SendResult(
        SendOutcome.REJECTED,
        400,
        "400",
        rejected={
            0: [Rejection("/data/attributes/[0]/order_id", "invalid", "Field required")],
            2: [Rejection("/data/attributes/[2]/shipping_address/name", "invalid", "Field required")],
        },
    )
    sender = ScriptedSender(rejected)
    buffer, store, metrics, clock = await make_buffer(new_store, sender)
    for name in "abcd":
        await buffer.add(7, "shopify", order(name))
    with capture_logs() as logs:
        await clock.advance(1.0)
    assert [[o.order_id for o in b] for b in sender.batches] == [["a", "b", "c", "d"], ["b", "d"]]
    letters = await store.dead_letters()
    assert [(d.order_id, d.reason, d.pointer) for d in letters] == [
        ("a", "sendcloud_rejected", "/data/attributes/[0]/order_id"),
        ("c", "sendcloud_rejected", "/data/attributes/[2]/shipping_address/name"),
    ]
    assert {d.at for d in letters} == {WALL_START + 1.0}
    assert (
        metrics.registry.get_sample_value("order_bridge_orders_dead_lettered_total", {"reason": "sendcloud_rejected"})
        == 2
    )
    assert metrics.registry.get_sample_value("order_bridge_dead_letters_stored") == 2
    assert [e["order_id"] for e in logs if e["event"] == "order.dead_lettered"] == ["a", "c"]
    await buffer.close(1)


@pytest.mark.anyio
async def test_misconfiguration_keeps_orders_and_alerts(new_store: StoreFactory) -> None:
    """401 keeps every order, logs an error alert, and the batch goes once credentials work."""
    unauthorized = SendResult(SendOutcome.MISCONFIGURED, 401, "unauthorized", detail="credentials refused")
    sender = ScriptedSender(unauthorized, unauthorized)
    buffer, store, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a"))
    with capture_logs() as logs:
        await clock.advance(3.0)  # debounce, then two backoffs of 1 s
    assert len(sender.batches) == 3 and store.dead_letter_count() == 0 and buffer.pending() == 0
    alerts = [e for e in logs if e["event"] == "sendcloud.alert"]
    assert len(alerts) == 2 and alerts[0]["log_level"] == "error" and alerts[0]["status"] == 401
    await buffer.close(1)


@pytest.mark.anyio
async def test_sender_exception_does_not_lose_the_batch(new_store: StoreFactory) -> None:
    """A bug in the client is logged and the batch retried, not lost."""

    class Exploding(ScriptedSender):
        async def send(
            self,
            orders: Sequence[EncodedOrder],
            *,
            reserved: bool = False,
            still_mine: Callable[[], bool] | None = None,
        ) -> SendResult:
            if not self.batches:
                self.batches.append(list(orders))
                raise RuntimeError("boom")
            return await super().send(orders, reserved=reserved)

    sender = Exploding()
    buffer, _, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a"))
    with capture_logs() as logs:
        await clock.advance(2.0)
    assert len(sender.batches) == 2 and buffer.pending() == 0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["batch.error"]
    await buffer.close(1)


@pytest.mark.anyio
async def test_max_pending_refuses_and_close_flushes_everything(new_store: StoreFactory) -> None:
    """Past max_pending add() raises BufferFull; close() flushes regardless of debounce, then refuses."""
    sender = ScriptedSender()
    buffer, _, _, _ = await make_buffer(new_store, sender, debounce_seconds=60, max_wait_seconds=60, max_pending=3)
    for name in "abc":
        await buffer.add(7, "shopify", order(name))
    with pytest.raises(BufferFull):
        await buffer.add(7, "shopify", order("d"))
    assert buffer.above_high_water()
    assert await buffer.close(2) == 0
    assert sorted(o.order_id for b in sender.batches for o in b) == ["a", "b", "c"]
    with pytest.raises(BufferClosed):
        await buffer.add(7, "shopify", order("e"))


@pytest.mark.anyio
async def test_close_reports_what_it_could_not_send(new_store: StoreFactory) -> None:
    """When Sendcloud stays down past the timeout, close() returns and logs the unsent count."""
    down = SendResult(SendOutcome.RETRY, 503, "503")
    sender = ScriptedSender(*([down] * 100))
    buffer, _, _, _ = await make_buffer(new_store, sender, debounce_seconds=60, max_wait_seconds=60)
    await buffer.add(7, "shopify", order("a"))
    await buffer.add(7, "shopify", order("b"))
    with capture_logs() as logs:
        assert await buffer.close(0.05) == 2  # the lane backs off on the fake clock, which stands still
    unsent = [e for e in logs if e["event"] == "shutdown.unsent"]
    assert unsent and unsent[0]["orders"] == 2 and unsent[0]["by_integration"] == {7: 2}


@pytest.mark.anyio
async def test_waiting_for_a_rate_token_lets_the_batch_grow(new_store: StoreFactory) -> None:
    """The batch is taken after the token arrives, so orders added while waiting ride along."""

    class SlowToken(ScriptedSender):
        def __init__(self) -> None:
            super().__init__()
            self.token = asyncio.Event()

        async def reserve(self) -> None:
            await self.token.wait()

    sender = SlowToken()
    buffer, _, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a"))
    await clock.advance(1.0)  # debounce fired, the lane waits for a token
    await buffer.add(7, "shopify", order("b"))
    sender.token.set()
    await clock.idle()
    assert [[o.order_id for o in b] for b in sender.batches] == [["a", "b"]]
    await buffer.close(1)


@pytest.mark.anyio
async def test_pending_and_oldest_age_gauges(new_store: StoreFactory) -> None:
    """orders_pending and oldest_pending_age_seconds read the buffer at scrape time."""
    sender = ScriptedSender()
    buffer, _, metrics, clock = await make_buffer(new_store, sender, debounce_seconds=60, max_wait_seconds=60)
    await buffer.add(7, "shopify", order("a"))
    await clock.advance(12.5)
    assert metrics.registry.get_sample_value("order_bridge_orders_pending") == 1
    assert metrics.registry.get_sample_value("order_bridge_oldest_pending_age_seconds") == 12.5
    buffer.flush()
    await clock.idle()
    assert metrics.registry.get_sample_value("order_bridge_orders_pending") == 0
    assert metrics.registry.get_sample_value("order_bridge_oldest_pending_age_seconds") == 0
    await buffer.close(1)


@pytest.mark.anyio
async def test_ledger_balances_through_coalescing_retries_and_refusals(new_store: StoreFactory) -> None:
    """accepted = sent + superseded + dead_lettered + pending, at every point of a rough ride, and
    the metric shows the store's counts."""
    retry = SendResult(SendOutcome.RETRY, 503, "503", retry_after=10.0)
    refuse_first = SendResult(
        SendOutcome.REJECTED, 400, "400", rejected={0: [Rejection("/data/attributes/[0]/order_id", "invalid", "x")]}
    )
    sender = ScriptedSender(retry, refuse_first, hold=True)
    buffer, _, metrics, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a", 1))
    await buffer.add(7, "shopify", order("a", 2))  # coalesced: version 1 superseded
    await buffer.add(7, "shopify", order("b", 1))
    assert buffer.ledger().balanced
    await clock.advance(1.0)  # first flush in flight
    await buffer.add(7, "shopify", order("b", 2))  # will supersede the in-flight version on retry
    assert buffer.ledger().balanced
    sender.release()  # 503: back off 10 s
    await clock.advance(10.0)
    sender.release()  # [0] refused, the rest again at once
    await clock.idle()
    sender.release()
    await clock.idle()
    ledger = buffer.ledger()
    assert ledger.balanced and ledger.pending == 0
    assert (ledger.accepted, ledger.sent, ledger.superseded, ledger.dead_lettered) == (4, 1, 2, 1)
    fates = {
        fate: metrics.registry.get_sample_value("order_bridge_order_versions_total", {"fate": fate})
        for fate in ("accepted", "sent", "superseded", "dead_lettered")
    }
    assert fates == {"accepted": 4, "sent": 1, "superseded": 2, "dead_lettered": 1}
    await buffer.close(1)


@pytest.mark.anyio
@pytest.mark.parametrize("new_store", ["memory", "sqlite"], indirect=True)  # PostgreSQL keeps none in memory
async def test_a_backlog_is_kept_compressed_and_sent_intact(new_store: StoreFactory) -> None:
    """Past `compress_share` of max_pending new orders are stored compressed; batches carry the same JSON."""
    sender = ScriptedSender()
    buffer, _, _, clock = await make_buffer(
        new_store, sender, debounce_seconds=60, max_wait_seconds=60, max_pending=10, compress_share=0.2
    )
    for name in "abcde":
        await buffer.add(7, "shopify", order(name))
    buffer.flush()
    await clock.idle()
    (batch,) = sender.batches
    assert [o.compressed for o in batch] == [False, False, True, True, True]
    assert all(o.json == encode_order(order(o.order_id)).json for o in batch)
    assert encode_orders(batch) == encode_orders([order(name) for name in "abcde"])
    await buffer.close(1)


@pytest.mark.anyio
async def test_start_resumes_a_store_with_a_batch_in_flight(new_store: StoreFactory) -> None:
    """A buffer started on a store that holds orders — one batch in flight when the last one
    stopped — resends that batch and flushes the rest, and says so in the log."""
    store = await new_store()
    for name in "abc":
        await store.add(arrival(name, received=WALL_START))
    await store.take(7, 2, batch_id="crashed", attempt=3)
    sender = ScriptedSender()
    clock = FakeClock(busy=getattr(store, "writing", None))
    buffer = Buffer(BufferSettings(), sender, store, Metrics(), clock=clock)
    with capture_logs() as logs:
        await buffer.start()
        await clock.advance(0.99)
        assert sender.batches == []
        await clock.advance(0.01)  # quiet for debounce_seconds since the start
    assert [[o.order_id for o in b] for b in sender.batches] == [["a", "b", "c"]]
    (recovered,) = [e for e in logs if e["event"] == "batch.recovered"]
    assert (recovered["batch_id"], recovered["size"], recovered["attempt"]) == ("crashed", 2, 3)
    assert buffer.ledger().balanced and buffer.pending() == 0
    await buffer.close(1)


@pytest.mark.anyio
async def test_a_recovered_lane_waits_out_the_dead_process_request(new_store: StoreFactory) -> None:
    """The lane whose batch was in flight at the crash sends nothing for `recovery_hold` seconds
    (the client timeout: the dead process's request may still land, and must not land after a
    newer version); a lane that had nothing in flight flushes as usual."""
    store = await new_store()
    await store.add(arrival("a", received=WALL_START))
    await store.take(7, 1, batch_id="crashed", attempt=1)
    await store.add(arrival("a", 5, received=WALL_START))  # a newer version, pending behind it
    await store.add(arrival("z", received=WALL_START)._replace(integration_id=8))
    sender = ScriptedSender()
    clock = FakeClock(busy=getattr(store, "writing", None))
    buffer = Buffer(BufferSettings(), sender, store, Metrics(), clock=clock, recovery_hold=10.0)
    await buffer.start()
    await clock.advance(9.9)
    assert [[o.order_id for o in b] for b in sender.batches] == [["z"]]  # lane 8 only
    await clock.advance(0.1)
    assert [[o.order_id for o in b] for b in sender.batches] == [["z"], ["a"]]
    assert updated_at(sender.batches[1][0]) == T0 + timedelta(minutes=5)  # the newer version went, once
    assert buffer.ledger().balanced and buffer.pending() == 0
    await buffer.close(1)


def test_the_buffer_knows_nothing_of_http() -> None:
    """The buffer, the store and the settlement import no HTTP client: the Sendcloud side is a `Sender`."""
    code = (
        "import sys, service.buffer, service.settlement, service.store.memory; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore') or m == 'service.sendcloud'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.anyio
async def test_a_paused_lane_takes_orders_and_sends_none_until_resumed(new_store: StoreFactory) -> None:
    """Paused (a Sendcloud incident, a bad config): orders keep arriving and wait — past
    debounce, max_wait and a flush on demand; resumed, they go in one batch. The next flush's
    reason and time say so throughout."""
    sender = ScriptedSender()
    buffer, store, _, clock = await make_buffer(new_store, sender)
    await buffer.pause(7)
    await buffer.add(7, "shopify", order("a"))
    lane = buffer.lane(7)
    assert lane is not None and lane.next_flush(clock.now, clock.wall(), False) == ("paused", None)
    buffer.flush(7)
    await clock.advance(10.0)
    await buffer.add(7, "shopify", order("b"))
    await clock.advance(10.0)
    assert sender.batches == [] and buffer.pending() == 2 and store.paused() == frozenset({7})
    await buffer.pause(7, False)
    assert lane.next_flush(clock.now, clock.wall(), False) == ("debounce", 0.0)  # due at once
    await clock.advance(0.1)
    assert [[o.order_id for o in batch] for batch in sender.batches] == [["a", "b"]] and buffer.pending() == 0
    assert lane.next_flush(clock.now, clock.wall(), False) == (None, None)
    await buffer.add(7, "shopify", order("c"))
    assert lane.next_flush(clock.now, clock.wall(), False) == ("debounce", 1.0)
    await buffer.close(1)


@pytest.mark.anyio
async def test_a_paused_lane_holds_its_orders_at_shutdown(tmp_path: Path) -> None:
    """Shutdown does not send a paused lane's orders (the pause is a person's decision); the
    file keeps them and the pause, and a restarted buffer still holds them."""
    sender = ScriptedSender()
    store = SqliteStore.open(tmp_path / "state.db")
    clock = FakeClock(busy=store.writing)
    buffer = Buffer(BufferSettings(), sender, store, Metrics(), clock=clock)
    await buffer.pause(7)
    await buffer.add(7, "shopify", order("a"))
    with capture_logs() as logs:
        assert await buffer.close(1) == 1
    assert [e["paused"] for e in logs if e["event"] == "shutdown.unsent"] == [[7]]
    await store.close()

    store = SqliteStore.open(tmp_path / "state.db")
    clock = FakeClock(busy=store.writing)
    buffer = Buffer(BufferSettings(), sender, store, Metrics(), clock=clock)
    await buffer.start()
    await clock.advance(10.0)
    assert sender.batches == [] and buffer.pending() == 1
    await buffer.pause(7, False)
    await clock.advance(1.0)
    assert len(sender.batches) == 1 and buffer.pending() == 0
    await buffer.close(1)
    await store.close()


@pytest.mark.anyio
async def test_each_order_history_follows_it_to_sendclouds_answer(new_store: StoreFactory) -> None:
    """Received, retried (with the cause) in one batch, accepted (with Sendcloud's id) in the next."""
    sender = ScriptedSender(SendResult(SendOutcome.RETRY, 503, "503"))
    buffer, store, _, clock = await make_buffer(new_store, sender)
    await buffer.add(7, "shopify", order("a"), delivery_id="d-1", topic="orders/create")
    await clock.advance(3.0)
    steps = await store.history(7, order_id="a")
    assert [(s.event, s.attempt, s.detail) for s in steps] == [
        ("received", None, None),
        ("retried", 1, "503"),
        ("accepted", 2, None),
    ]
    assert (steps[0].outcome, steps[0].delivery_id, steps[0].topic, steps[0].order_number) == (
        "buffered",
        "d-1",
        "orders/create",
        "#1001",
    )
    assert steps[-1].sendcloud_id is not None and steps[1].batch_id != steps[2].batch_id
    await buffer.close(1)


@pytest.mark.anyio
async def test_a_paused_lane_is_flushed_at_shutdown_when_its_store_would_forget() -> None:
    """With `memory://` nothing outlives the process: a paused lane's orders go at shutdown
    (logged) rather than vanish; with a file they stay held (the test above)."""
    sender = ScriptedSender()
    store = MemoryStore()
    buffer = Buffer(BufferSettings(), sender, store, Metrics(), clock=FakeClock())
    await buffer.pause(7)
    await buffer.add(7, "shopify", order("a"))
    with capture_logs() as logs:
        assert await buffer.close(5) == 0
    assert len(sender.batches) == 1 and store.unsettled() == 0
    assert [e["integration_id"] for e in logs if e["event"] == "lane.paused_flushed_at_shutdown"] == [7]
    with pytest.raises(BufferClosed):
        await buffer.pause(7, False)  # nothing changes once shutdown began

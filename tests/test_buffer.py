"""The debounce buffer: lanes, coalescing, staleness, triggers and what each Sendcloud answer does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from adapters import get_adapter
from adapters.sendcloud import EncodedOrder, Order, encode_order, encode_orders
from service.buffer import Buffer, BufferClosed, BufferFull, BufferSettings, Lane
from service.deadletters import DeadLetters
from service.lanes import AddResult, Entry, MemoryLaneStore
from service.metrics import Metrics
from service.sendcloud import Rejection, SendOutcome, SendResult

FIXTURE = (
    Path(__file__).parent
    / "fixtures"
    / "shopify"
    / "shopify_python_api__order_1001_us_authorized_3items__rest_envelope.json"
)
BASE = get_adapter("shopify").translate(FIXTURE.read_bytes(), 7)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def order(order_id: str, minute: int = 0) -> Order:
    """A copy of the base order with another id and update time."""
    details = msgspec.structs.replace(BASE.order_details, order_updated_at=T0 + timedelta(minutes=minute))
    return msgspec.structs.replace(BASE, order_id=order_id, order_details=details)


def updated_at(sent: EncodedOrder) -> datetime | None:
    """The update time of an order as the buffer handed it to the sender."""
    return msgspec.json.decode(sent.json, type=Order).order_details.order_updated_at


def accepted(orders: Sequence[EncodedOrder]) -> SendResult:
    return SendResult(SendOutcome.ACCEPTED, 201, "201", accepted={o.order_id: n for n, o in enumerate(orders, 1)})


class ScriptedSender:
    """A Sender that records batches and answers from a script (default: accept everything)."""

    def __init__(self, *answers: SendResult | None, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.batches: list[list[EncodedOrder]] = []
        self.reserved = 0
        self.delay = delay

    async def reserve(self) -> None:
        self.reserved += 1

    async def send(self, orders: Sequence[EncodedOrder], *, reserved: bool = False) -> SendResult:
        assert reserved, "the buffer reserves a token before every send"
        self.batches.append(list(orders))
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers.pop(0) if self.answers else None
        return answer if answer is not None else accepted(orders)


def make_buffer(sender: ScriptedSender, **settings: float) -> tuple[Buffer, DeadLetters, Metrics]:
    metrics = Metrics()
    deadletters = DeadLetters(100, metrics)
    values = {"debounce_seconds": 0.05, "max_wait_seconds": 0.5, "max_batch": 100, "max_pending": 1000, **settings}
    buffer = Buffer(
        BufferSettings(**values),  # type: ignore[arg-type]
        sender,
        deadletters,
        metrics,
        backoff=lambda attempt, retry_after: retry_after if retry_after is not None else 0.05,
    )
    return buffer, deadletters, metrics


async def settle(buffer: Buffer, timeout: float = 3.0) -> None:
    """Wait until nothing is pending (or fail)."""
    for _ in range(int(timeout / 0.01)):
        if buffer.pending() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{buffer.pending()} orders still pending")


# ---------------------------------------------------------------- the store


def entry(order_id: str, version: tuple[float, int], received: float = 0.0) -> Entry:
    return Entry(7, "shopify", encode_order(order(order_id)), version, received)


def test_store_keeps_one_version_per_order_newest_wins() -> None:
    """A newer version replaces the pending one; an older one, or a repeat of the same, is stale."""
    store = MemoryLaneStore()
    assert store.add(entry("a", (10.0, 1))) is AddResult.BUFFERED
    assert store.add(entry("a", (20.0, 2))) is AddResult.COALESCED
    assert store.add(entry("a", (15.0, 3))) is AddResult.STALE
    assert store.add(entry("a", (20.0, 4))) is AddResult.STALE  # same time, same content: a repeat
    changed = entry("a", (20.0, 5))
    changed.order = encode_order(msgspec.structs.replace(order("a"), order_number="#1001-B"))
    assert store.add(changed) is AddResult.COALESCED  # same time, other content: newer by arrival
    assert store.pending() == 1
    assert store.take(10)[0].version == (20.0, 5)


def test_store_drops_versions_older_than_in_flight_or_sent() -> None:
    """Once a version is in flight or sent, older versions of that order are stale."""
    store = MemoryLaneStore()
    store.add(entry("a", (20.0, 1)))
    flying = store.take(1)
    assert store.add(entry("a", (10.0, 2))) is AddResult.STALE
    assert store.add(entry("a", (30.0, 3))) is AddResult.BUFFERED  # goes into the next batch
    store.settle(flying, sent=True)
    assert store.add(entry("a", (25.0, 4))) is AddResult.STALE  # newer than sent, older than pending
    assert store.take(1)[0].version == (30.0, 3)


def test_store_restore_prefers_a_newer_pending_version() -> None:
    """A retried batch does not resurrect a version superseded while it was in flight."""
    store = MemoryLaneStore()
    store.add(entry("a", (10.0, 1), received=1.0))
    store.add(entry("b", (10.0, 2), received=2.0))
    batch = store.take(2)
    store.add(entry("a", (20.0, 3), received=5.0))
    store.restore(batch)
    taken = store.take(10)
    assert [(e.order_id, e.version) for e in taken] == [("a", (20.0, 3)), ("b", (10.0, 2))]
    assert taken[0].received_at == 1.0  # it has been waiting since the first version arrived
    assert store.oldest_received() == 1.0


def test_store_oldest_received_counts_pending_and_in_flight() -> None:
    """The oldest unsettled receipt time covers orders in flight too."""
    store = MemoryLaneStore()
    store.add(entry("a", (1.0, 1), received=3.0))
    store.add(entry("b", (1.0, 2), received=4.0))
    store.take(1)
    assert store.oldest_received() == 3.0
    assert (store.pending(), store.in_flight()) == (1, 1)


def test_store_drops_a_repeat_of_what_was_sent() -> None:
    """The same content at the same update time as a sent version is a repeat; other content is not."""
    store = MemoryLaneStore()
    store.add(entry("a", (10.0, 1)))
    store.settle(store.take(1), sent=True)
    assert store.add(entry("a", (10.0, 2))) is AddResult.STALE
    changed = entry("a", (10.0, 3))
    changed.order = encode_order(msgspec.structs.replace(order("a"), order_number="#1001-B"))
    assert store.add(changed) is AddResult.BUFFERED


def test_store_forgets_sent_versions_beyond_its_bound() -> None:
    """Memory of sent versions is bounded; the oldest are forgotten first."""
    store = MemoryLaneStore(remember=2)
    for n, name in enumerate("abc"):
        store.add(entry(name, (10.0, n)))
    store.settle(store.take(3), sent=True)
    assert store.add(entry("a", (5.0, 9))) is AddResult.BUFFERED  # "a" was forgotten
    assert store.add(entry("c", (5.0, 10))) is AddResult.STALE


# ---------------------------------------------------------------- triggers (pure, fake clock)


def lane_with(*received: float, last: float | None = None, **settings: float) -> Lane:
    values = {"debounce_seconds": 1.0, "max_wait_seconds": 5.0, "max_batch": 3, **settings}
    lane = Lane(7, MemoryLaneStore(), BufferSettings(**values))  # type: ignore[arg-type]
    for n, at in enumerate(received):
        lane.store.add(entry(f"o{n}", (1.0, n), received=at))
    lane.last_activity = last if last is not None else (max(received) if received else None)
    return lane


def test_lane_triggers() -> None:
    """Size at once, debounce after quiet, max_wait for a busy lane, demand and shutdown; none when empty."""
    assert lane_with().due(100.0, closing=False) is None
    assert lane_with(0.0, 0.1, 0.2).due(0.2, closing=False) == "size"
    assert lane_with(0.0).due(0.5, closing=False) is None
    assert lane_with(0.0).due(1.0, closing=False) == "debounce"
    busy = lane_with(0.0, last=4.9)
    assert busy.due(4.95, closing=False) is None
    assert busy.due(5.0, closing=False) == "max_wait"
    assert lane_with(0.0).due(0.1, closing=True) == "shutdown"
    demanded = lane_with(0.0)
    demanded.flush_requested = True
    assert demanded.due(0.1, closing=False) == "demand"


def test_lane_backoff_holds_every_trigger() -> None:
    """While backing off, not even size, demand or shutdown flush; wait_time points at its end."""
    lane = lane_with(0.0, 0.1, 0.2)
    lane.not_before = 10.0
    lane.flush_requested = True
    assert lane.due(9.9, closing=True) is None
    assert lane.wait_time(9.0) == pytest.approx(1.0)
    assert lane.due(10.0, closing=True) == "shutdown"


def test_lane_wait_time_is_the_nearest_deadline() -> None:
    """The runner sleeps until the debounce or max_wait deadline, whichever comes first."""
    assert lane_with().wait_time(0.0) is None
    assert lane_with(0.0).wait_time(0.25) == pytest.approx(0.75)
    assert lane_with(0.0, last=4.5).wait_time(4.6) == pytest.approx(0.4)


# ---------------------------------------------------------------- the running buffer


@pytest.mark.anyio
async def test_debounce_coalesces_updates_into_one_batch() -> None:
    """Five versions of one order and two other orders become one batch with the newest version."""
    sender = ScriptedSender()
    buffer, _, metrics = make_buffer(sender)
    for minute in range(5):
        buffer.add(7, "shopify", order("a", minute))
    buffer.add(7, "shopify", order("b"))
    buffer.add(7, "shopify", order("c"))
    await settle(buffer)
    assert len(sender.batches) == 1
    sent = {o.order_id: o for o in sender.batches[0]}
    assert sorted(sent) == ["a", "b", "c"]
    assert updated_at(sent["a"]) == T0 + timedelta(minutes=4)
    assert metrics.registry.get_sample_value("order_bridge_orders_accepted_total") == 3
    await buffer.close(1)


@pytest.mark.anyio
async def test_full_lane_flushes_at_once_in_batches_of_max() -> None:
    """250 orders with a long debounce leave as 100 + 100 at once, the last 50 after the debounce."""
    sender = ScriptedSender()
    buffer, _, _ = make_buffer(sender, debounce_seconds=0.3, max_wait_seconds=5.0)
    for n in range(250):
        buffer.add(7, "shopify", order(f"o{n}"))
    await asyncio.sleep(0.1)
    assert [len(b) for b in sender.batches] == [100, 100]
    await settle(buffer)
    assert [len(b) for b in sender.batches] == [100, 100, 50]
    assert [o.order_id for b in sender.batches for o in b] == [f"o{n}" for n in range(250)]
    await buffer.close(1)


@pytest.mark.anyio
async def test_lanes_are_per_integration() -> None:
    """Orders of two integrations never share a batch."""
    sender = ScriptedSender()
    buffer, _, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a"))
    buffer.add(8, "shopify", order("b"))
    await settle(buffer)
    assert sorted(len(b) for b in sender.batches) == [1, 1]
    await buffer.close(1)


@pytest.mark.anyio
async def test_update_during_flight_goes_in_the_next_batch_never_concurrently() -> None:
    """A version that arrives while its order is in flight waits; one flush per lane at a time."""
    sender = ScriptedSender(delay=0.2)
    buffer, _, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a", 1))
    await asyncio.sleep(0.1)  # flushed, in flight
    assert len(sender.batches) == 1
    assert buffer.add(7, "shopify", order("a", 0)) is AddResult.STALE  # older than the one in flight
    assert buffer.add(7, "shopify", order("a", 2)) is AddResult.BUFFERED
    await settle(buffer)
    versions = [updated_at(b[0]) for b in sender.batches]
    assert versions == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    await buffer.close(1)


@pytest.mark.anyio
async def test_retry_keeps_orders_and_merges_newer_versions() -> None:
    """A 429-like answer keeps the batch; a version that arrives during the backoff replaces it."""
    retry = SendResult(SendOutcome.RETRY, 429, "rate_limited", retry_after=0.2)
    sender = ScriptedSender(retry)
    buffer, _, metrics = make_buffer(sender)
    buffer.add(7, "shopify", order("a", 1))
    buffer.add(7, "shopify", order("b", 1))
    with capture_logs() as logs:
        await asyncio.sleep(0.1)
        buffer.add(7, "shopify", order("a", 2))
        await settle(buffer)
    assert len(sender.batches) == 2
    final = {o.order_id: updated_at(o) for o in sender.batches[1]}
    assert final == {"a": T0 + timedelta(minutes=2), "b": T0 + timedelta(minutes=1)}
    retries = [e for e in logs if e["event"] == "batch.retry"]
    assert retries and retries[0]["cause"] == "rate_limited" and retries[0]["delay"] == 0.2
    assert metrics.registry.get_sample_value("order_bridge_batches_total", {"outcome": "retried"}) == 1
    await buffer.close(1)


@pytest.mark.anyio
async def test_rejected_orders_are_dead_lettered_the_rest_resent_at_once() -> None:
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
    buffer, deadletters, metrics = make_buffer(sender, debounce_seconds=0.05)
    for name in "abcd":
        buffer.add(7, "shopify", order(name))
    await settle(buffer)
    assert [[o.order_id for o in b] for b in sender.batches] == [["a", "b", "c", "d"], ["b", "d"]]
    letters = deadletters.items()
    assert [(d.order_id, d.reason, d.pointer) for d in letters] == [
        ("a", "sendcloud_rejected", "/data/attributes/[0]/order_id"),
        ("c", "sendcloud_rejected", "/data/attributes/[2]/shipping_address/name"),
    ]
    assert (
        metrics.registry.get_sample_value("order_bridge_orders_dead_lettered_total", {"reason": "sendcloud_rejected"})
        == 2
    )
    await buffer.close(1)


@pytest.mark.anyio
async def test_misconfiguration_keeps_orders_and_alerts() -> None:
    """401 keeps every order, logs an error alert, and the batch goes once credentials work."""
    unauthorized = SendResult(SendOutcome.MISCONFIGURED, 401, "unauthorized", detail="credentials refused")
    sender = ScriptedSender(unauthorized, unauthorized)
    buffer, deadletters, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a"))
    with capture_logs() as logs:
        await settle(buffer)
    assert len(sender.batches) == 3 and len(deadletters) == 0
    alerts = [e for e in logs if e["event"] == "sendcloud.alert"]
    assert len(alerts) == 2 and alerts[0]["log_level"] == "error" and alerts[0]["status"] == 401
    await buffer.close(1)


@pytest.mark.anyio
async def test_sender_exception_does_not_lose_the_batch() -> None:
    """A bug in the client is logged and the batch retried, not lost."""

    class Exploding(ScriptedSender):
        async def send(self, orders: Sequence[EncodedOrder], *, reserved: bool = False) -> SendResult:
            if not self.batches:
                self.batches.append(list(orders))
                raise RuntimeError("boom")
            return await super().send(orders, reserved=reserved)

    sender = Exploding()
    buffer, _, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a"))
    await settle(buffer)
    assert len(sender.batches) == 2
    await buffer.close(1)


@pytest.mark.anyio
async def test_max_pending_refuses_and_close_flushes_everything() -> None:
    """Past max_pending add() raises BufferFull; close() flushes regardless of debounce, then refuses."""
    sender = ScriptedSender()
    buffer, _, _ = make_buffer(sender, debounce_seconds=60, max_wait_seconds=60, max_pending=3)
    for name in "abc":
        buffer.add(7, "shopify", order(name))
    with pytest.raises(BufferFull):
        buffer.add(7, "shopify", order("d"))
    assert buffer.above_high_water()
    assert await buffer.close(2) == 0
    assert sorted(o.order_id for b in sender.batches for o in b) == ["a", "b", "c"]
    with pytest.raises(BufferClosed):
        buffer.add(7, "shopify", order("e"))


@pytest.mark.anyio
async def test_close_reports_what_it_could_not_send() -> None:
    """When Sendcloud stays down past the timeout, close() returns and logs the unsent count."""
    down = SendResult(SendOutcome.RETRY, 503, "503")
    sender = ScriptedSender(*([down] * 100))
    buffer, _, _ = make_buffer(sender, debounce_seconds=60, max_wait_seconds=60)
    buffer.add(7, "shopify", order("a"))
    buffer.add(7, "shopify", order("b"))
    with capture_logs() as logs:
        assert await buffer.close(0.3) == 2
    unsent = [e for e in logs if e["event"] == "shutdown.unsent"]
    assert unsent and unsent[0]["orders"] == 2 and unsent[0]["by_integration"] == {7: 2}


@pytest.mark.anyio
async def test_waiting_for_a_rate_token_lets_the_batch_grow() -> None:
    """The batch is taken after the token arrives, so orders added while waiting ride along."""

    class SlowToken(ScriptedSender):
        async def reserve(self) -> None:
            await asyncio.sleep(0.2)

    sender = SlowToken()
    buffer, _, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a"))
    await asyncio.sleep(0.1)  # debounce fired, the lane waits for a token
    buffer.add(7, "shopify", order("b"))
    await settle(buffer)
    assert [[o.order_id for o in b] for b in sender.batches] == [["a", "b"]]
    await buffer.close(1)


@pytest.mark.anyio
async def test_pending_and_oldest_age_gauges() -> None:
    """orders_pending and oldest_pending_age_seconds read the buffer at scrape time."""
    sender = ScriptedSender()
    buffer, _, metrics = make_buffer(sender, debounce_seconds=60, max_wait_seconds=60)
    buffer.add(7, "shopify", order("a"))
    await asyncio.sleep(0.05)
    assert metrics.registry.get_sample_value("order_bridge_orders_pending") == 1
    assert (metrics.registry.get_sample_value("order_bridge_oldest_pending_age_seconds") or 0) >= 0.04
    buffer.flush()
    await settle(buffer)
    assert metrics.registry.get_sample_value("order_bridge_orders_pending") == 0
    await buffer.close(1)


@pytest.mark.anyio
async def test_ledger_balances_through_coalescing_retries_and_refusals() -> None:
    """accepted = sent + superseded + dead_lettered + pending, at every point of a rough ride."""
    retry = SendResult(SendOutcome.RETRY, 503, "503", retry_after=0.1)
    refuse_first = SendResult(
        SendOutcome.REJECTED, 400, "400", rejected={0: [Rejection("/data/attributes/[0]/order_id", "invalid", "x")]}
    )
    sender = ScriptedSender(retry, refuse_first, delay=0.05)
    buffer, _, _ = make_buffer(sender)
    buffer.add(7, "shopify", order("a", 1))
    buffer.add(7, "shopify", order("a", 2))  # coalesced: version 1 superseded
    buffer.add(7, "shopify", order("b", 1))
    assert buffer.ledger().balanced
    await asyncio.sleep(0.08)  # first flush in flight
    buffer.add(7, "shopify", order("b", 2))  # will supersede the in-flight version on retry
    assert buffer.ledger().balanced
    await settle(buffer)
    ledger = buffer.ledger()
    assert ledger.balanced and ledger.pending == 0
    assert (ledger.accepted, ledger.sent, ledger.superseded, ledger.dead_lettered) == (4, 1, 2, 1)
    await buffer.close(1)


@pytest.mark.anyio
async def test_a_backlog_is_kept_compressed_and_sent_intact() -> None:
    """Past `compress_share` of max_pending new orders are stored compressed; batches carry the same JSON."""
    sender = ScriptedSender()
    buffer, _, _ = make_buffer(sender, debounce_seconds=60, max_wait_seconds=60, max_pending=10, compress_share=0.2)
    for name in "abcde":
        buffer.add(7, "shopify", order(name))
    buffer.flush()
    await settle(buffer)
    (batch,) = sender.batches
    assert [o.compressed for o in batch] == [False, False, True, True, True]
    assert all(o.json == encode_order(order(o.order_id)).json for o in batch)
    assert encode_orders(batch) == encode_orders([order(name) for name in "abcde"])
    await buffer.close(1)

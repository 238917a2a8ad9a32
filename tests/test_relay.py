"""The SQLite store shared by `serve --workers` (`service.store.relay`), in one process over a
real Unix socket: an acceptor's store calls reach the owner's file and come back as the
protocol's types; a delivery taken by one worker is a duplicate at another; the owner's buffer
hears of the lanes acceptors fill; the owner gone is `StoreUnavailable` at once (503), and
back, the relay connects anew by itself. The processes themselves: `tests/test_workers.py`."""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from adapters.sendcloud import EncodedOrder
from service.buffer import Buffer, BufferClosed, BufferFull, BufferSettings
from service.metrics import Metrics
from service.sender import SendResult
from service.store import AddResult, DeadLetter, NotFlusher, Settlement, StoreSettings, StoreUnavailable
from service.store import relay as relay_module
from service.store.relay import RelayStore, StoreHost
from service.store.sqlite import SqliteStore
from tests.versions import arrival


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class NoSender:
    """The owner's Sendcloud side: these tests never let a lane flush (an hour's debounce)."""

    async def reserve(self) -> None:
        raise AssertionError("no flush in these tests")

    async def send(
        self, orders: Sequence[EncodedOrder], *, reserved: bool = False, still_mine: Callable[[], bool] | None = None
    ) -> SendResult:
        raise AssertionError("no flush in these tests")


@dataclass
class Owner:
    """The first worker's side: its store (the file), its buffer and the host, as `create_app`
    wires them."""

    path: Path
    socket: str
    max_pending: int = 50_000
    store: SqliteStore = field(init=False)
    buffer: Buffer = field(init=False)
    host: StoreHost = field(init=False)
    running: bool = False

    async def start(self) -> Owner:
        self.store = SqliteStore.open(self.path, synchronous="normal")
        settings = BufferSettings(debounce_seconds=3600, max_wait_seconds=3600, max_pending=self.max_pending)
        self.buffer = Buffer(settings, NoSender(), self.store, Metrics())
        await self.buffer.start()
        self.host = StoreHost(self.store, self.socket, self.buffer.admit)
        await self.host.start()
        self.running = True
        return self

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.buffer.close(0.1)
            await self.host.close()
            await self.store.close()


@pytest.fixture
async def owner(tmp_path: Path) -> AsyncIterator[Owner]:
    started = await Owner(tmp_path / "state.db", str(tmp_path / "state.db.sock")).start()
    yield started
    await started.stop()


async def connected(socket: str) -> RelayStore:
    relay = RelayStore(socket, StoreSettings())
    await relay.connect()
    return relay


async def until(check: object, seconds: float = 5.0) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), seconds)


@pytest.mark.anyio
async def test_an_acceptors_orders_are_committed_in_the_owners_file(owner: Owner) -> None:
    relay = await connected(owner.socket)
    try:
        assert os.stat(owner.socket).st_mode & 0o777 == 0o600
        results = await asyncio.gather(*(relay.add(arrival(f"r{n}", 1)) for n in range(20)))
        assert results == [AddResult.BUFFERED] * 20
        await relay.connect()  # again, as the app's start-up does after the CLI's: the same connection
        gc.collect()
        assert await relay.add(arrival("r0", 2)) is AddResult.COALESCED
        assert await relay.add(arrival("r0", 1)) is AddResult.STALE
        assert owner.store.pending(7) == 20
        lane = owner.buffer.lane(7)  # the owner's buffer took them as its own: the lane's timers run
        assert lane is not None and lane.last_activity is not None
        # the relay's reads come from the owner's snapshot
        await until(lambda: relay.pending(7) == 20)
        assert relay.lanes() == (7,) and relay.unsettled() == 20 and relay.in_flight(7) == 0
        assert relay.ledger() == owner.store.ledger() and relay.ledger().accepted == 21
        assert relay.oldest_received(7) == owner.store.oldest_received(7) and relay.available()
        # the admin reads carry the protocol's types back
        listed = await relay.list_pending(7, 3)
        assert [e.order_id for e in listed] == [e.order_id for e in await owner.store.list_pending(7, 3)]
        assert listed[0].order.json == (await owner.store.list_pending(7, 1))[0].order.json
        steps = await relay.history(7, order_id="r0")
        assert [s.outcome for s in steps] == ["buffered", "coalesced", "stale"]
    finally:
        await relay.close()
    # what was answered is in the file: the owner started again reads it back
    await owner.stop()
    await owner.start()
    assert owner.store.pending(7) == 20


@pytest.mark.anyio
async def test_a_delivery_taken_by_one_worker_is_a_duplicate_at_another(owner: Owner) -> None:
    first, second = await connected(owner.socket), await connected(owner.socket)
    try:
        delivered = arrival("d1", 1)._replace(delivery_id="delivery-1")
        assert await first.add(delivered) is AddResult.BUFFERED
        assert first.seen_delivery(7, "delivery-1", 1.0)  # its own retry: caught before translating
        assert not second.seen_delivery(7, "delivery-1", 1.0)
        assert await second.add(delivered) is AddResult.DUPLICATE  # the owner caught it
        # a delivery taken without an order (an ignored topic) reaches the owner too
        second.remember_delivery(7, "delivery-2", 1.0)
        await until(lambda: owner.store.seen_delivery(7, "delivery-2", 1.0))
        assert await first.add(arrival("d2", 1)._replace(delivery_id="delivery-2")) is AddResult.DUPLICATE
        assert owner.store.ledger().accepted == 1
    finally:
        await first.close()
        await second.close()


@pytest.mark.anyio
async def test_dead_letters_and_pauses_go_to_the_owner(owner: Owner) -> None:
    relay = await connected(owner.socket)
    try:
        letter = DeadLetter(7, "shopify", "x1", "invalid_address", "no street", at=5.0, webhook=b'{"id": 1}')
        settled = await relay.add_dead_letters([letter])
        assert [k.id for k in settled.kept] == [1] and owner.store.dead_letter_count() == 1
        assert await relay.dead_letter_webhook(1) == b'{"id": 1}'
        assert [d.order_id for d in await relay.dead_letters(7, reason="invalid_address")] == ["x1"]
        failed = await relay.dead_letter_failed_again(1, "still no street", 6.0)
        assert failed is not None and failed.attempts == 1
        assert (await relay.resolve_dead_letter(1, "discarded")) is not None and await relay.dead_letter(1) is None
        await relay.set_paused(7, True)
        assert owner.store.paused() == frozenset({7})
        await until(lambda: relay.paused() == frozenset({7}))
    finally:
        await relay.close()


@pytest.mark.anyio
async def test_an_acceptor_never_flushes(owner: Owner) -> None:
    relay = await connected(owner.socket)
    try:
        assert await relay.add(arrival("f1", 1)) is AddResult.BUFFERED
        assert not relay.flushing() and await relay.recover() == () and await relay.prune(0.0) == 0
        with pytest.raises(NotFlusher):
            await relay.take(7, 100, batch_id="b", attempt=1)
        batch = await owner.store.take(7, 100, batch_id="b", attempt=1)
        assert batch is not None
        with pytest.raises(NotFlusher):
            await relay.settle(batch, Settlement(batch.entries, (), (), ()))
        assert (await relay.batch_in_flight(7)) == batch  # the owner's batch, read through the relay
        await until(lambda: relay.in_flight(7) == 1 and relay.pending(7) == 0)
    finally:
        await relay.close()


@pytest.mark.anyio
async def test_the_owner_gone_is_unavailable_at_once_and_back_the_relay_reconnects(owner: Owner) -> None:
    relay = await connected(owner.socket)
    try:
        assert await relay.add(arrival("g1", 1)) is AddResult.BUFFERED
        await owner.stop()
        await until(lambda: not relay.available())
        with pytest.raises(StoreUnavailable, match="not running"):
            await relay.add(arrival("g2", 1))
        await owner.start()
        await until(relay.available)
        assert await relay.add(arrival("g2", 1)) is AddResult.BUFFERED
        assert owner.store.pending(7) == 2
    finally:
        await relay.close()


@pytest.mark.anyio
async def test_the_owners_buffer_rules_hold_for_relayed_orders(tmp_path: Path) -> None:
    """`max_pending` is the owner's to enforce (an acceptor's counts are half a second old): a
    relayed order beyond it is `BufferFull`; once the owner's buffer is closing, `BufferClosed`
    — the webhook answers 503 `buffer_full` / `shutting_down`, as at the owner."""
    owner = await Owner(tmp_path / "state.db", str(tmp_path / "state.db.sock"), max_pending=2).start()
    relay = await connected(owner.socket)
    try:
        assert [await relay.add(arrival(f"m{n}", 1)) for n in range(2)] == [AddResult.BUFFERED] * 2
        assert relay.unsettled() < 2  # the snapshot has not caught up: the owner refuses all the same
        with pytest.raises(BufferFull):
            await relay.add(arrival("m2", 1))
        closing = asyncio.get_running_loop().create_task(owner.buffer.close(0.5))
        await asyncio.sleep(0)
        with pytest.raises(BufferClosed):
            await relay.add(arrival("m3", 1))
        await closing
        assert owner.store.pending(7) == 2
    finally:
        await relay.close()
        await owner.stop()


@pytest.mark.anyio
async def test_a_call_under_way_when_the_owner_goes_fails_at_once(
    owner: Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection lost with a call unanswered (the owner killed mid-commit): the call fails
    with `StoreUnavailable` at once, not after `CALL_TIMEOUT`."""
    relay = await connected(owner.socket)
    stuck = asyncio.Event()

    async def never(arrival: object) -> AddResult:
        await stuck.wait()
        return AddResult.BUFFERED

    monkeypatch.setattr(owner.host, "_admit", never)
    try:
        call = asyncio.get_running_loop().create_task(relay.add(arrival("k1", 1)))
        await asyncio.sleep(0.1)
        for writer in list(owner.host._writers):
            writer.transport.abort()  # as the kernel does for a killed process
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="went away"):
            await call
        assert time.monotonic() - began < 1.0
    finally:
        stuck.set()
        await relay.close()


@pytest.mark.anyio
async def test_a_relay_answered_with_garbage_connects_anew(tmp_path: Path) -> None:
    """Something that is not the owner's answer on the socket (another version's owner?): the
    relay drops that connection, logs it and connects again — it never stops trying."""
    path = str(tmp_path / "odd.sock")
    connections = 0

    async def odd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await reader.read(4)
            writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
            await writer.drain()
            await reader.read()
        except ConnectionError:
            pass  # the relay dropped it first
        finally:
            writer.close()

    server = await asyncio.start_unix_server(odd, path)
    relay = RelayStore(path, StoreSettings())
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(relay_module, "CONNECT_WAIT", 0.2)
    try:
        with capture_logs() as logs:
            await relay.connect()
            await until(lambda: connections >= 3)
        assert not relay.available()
        assert "store.relay_refused" in {entry["event"] for entry in logs}
    finally:
        monkeypatch.undo()
        await relay.close()
        server.close()


@pytest.mark.anyio
async def test_an_owner_that_stops_answering_fails_the_call_and_the_host_survives_garbage(
    owner: Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame that is not a relay's is dropped with its connection (logged), the host goes on;
    a call the owner never answers fails after `CALL_TIMEOUT` (503), not never."""
    reader, writer = await asyncio.open_unix_connection(owner.socket)
    with capture_logs() as logs:
        writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # 0xc1: never valid MessagePack
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # dropped
    assert [entry["event"] for entry in logs] == ["store.relay_refused"]
    relay = await connected(owner.socket)
    try:
        assert await relay.add(arrival("h1", 1)) is AddResult.BUFFERED
        monkeypatch.setattr(relay_module, "CALL_TIMEOUT", 0.3)
        stuck = asyncio.Event()

        async def never(*args: object) -> AddResult:
            await stuck.wait()
            return AddResult.BUFFERED

        monkeypatch.setattr(owner.host, "_admit", never)
        with pytest.raises(StoreUnavailable, match="did not answer"):
            await relay.add(arrival("h2", 1))
        stuck.set()
    finally:
        writer.close()
        await relay.close()

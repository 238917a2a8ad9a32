"""One SQLite store for `serve --workers N`: the first worker owns the file, the others relay
their store calls to it over a Unix socket (issue 12).

A SQLite file is one process's: `SqliteStore` decides in a mirror of the file kept in its memory,
behind a file lock. So with `--workers N` on SQLite the first worker owns the file — it runs a
`StoreHost` beside its webhook server and it alone flushes (the file lock is its lease: one owner
at a time, let go by the kernel when it dies) — and every other worker is an acceptor whose
`RelayStore` sends each store call to the host: verifying, translating and answering webhooks
spread over the workers' cores, the commits stay in one process (one writer, group commits).

- **`accepted` still means committed**: a relayed `add` is answered after the owner's commit.
- **Calls run concurrently** on one connection (each frame carries its call's number), so the
  adds of every worker ride in the owner's group commits together.
- **Duplicates across workers**: a delivery id the owner has taken (its own webhook, another
  acceptor's) makes a relayed `add` `DUPLICATE`, as between replicas on PostgreSQL.
- **The owner gone** (crashed, restarting): calls fail at once with `StoreUnavailable` (the
  webhook answers 503 + Retry-After, `/readyz` 503) until the supervisor has started it again and
  the relay is connected anew; nothing accepted is lost, since it is in the file.
- **What the buffer reads all the time** (counts, ledger, pauses, availability) comes from a
  snapshot of the owner's, fetched every `SNAPSHOT_EVERY` seconds.

Frames: a 4-byte big-endian length, then MessagePack: a call is `[number, method, [args…]]`
(number 0: nobody waits for the answer), an answer `[number, ok, result or error text]`. Each
method's argument and result types are read from the `Store` protocol's annotations, so the
relay carries exactly the protocol's types (msgspec decodes them back to named tuples and
dataclasses).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import struct
import tempfile
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog

from service.buffer import BufferClosed, BufferFull
from service.dedupe import SeenDeliveries
from service.store import (
    AddResult,
    Arrival,
    Batch,
    DeadLetter,
    Entry,
    HistoryEvent,
    Ledger,
    NotFlusher,
    Resolution,
    Settled,
    Settlement,
    Store,
    StoreSettings,
    StoreUnavailable,
)
from service.store.sqlite import SqliteStore

__all__ = [
    "CALL_TIMEOUT",
    "CONNECT_WAIT",
    "MAX_CALLS",
    "SNAPSHOT_EVERY",
    "RelayStore",
    "Snapshot",
    "StoreHost",
    "socket_path",
]

_log = structlog.get_logger("order_bridge.store")

#: how often an acceptor reads the owner's counts; a snapshot twice as old counts as no answer
SNAPSHOT_EVERY = 0.5
#: an owner that does not answer a call within this many seconds is taken as gone (503)
CALL_TIMEOUT = 10.0
#: how long an acceptor waits for the owner at start before it serves anyway (answering 503)
CONNECT_WAIT = 30.0
#: calls of one acceptor the owner runs at once; it reads no more of that acceptor's until one ends
MAX_CALLS = 512
_RECONNECT_PAUSE = 0.2
_MAX_FRAME = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")
_SOCKET_PATH_MAX = 107

#: the store calls an acceptor sends to the owner (the flusher's own — take, settle, recover,
#: prune — stay with the owner, which alone flushes)
_RELAYED = (
    "add",
    "add_dead_letters",
    "remember_delivery",
    "record_history",
    "resolve_dead_letter",
    "dead_letter_failed_again",
    "dead_letter_webhook",
    "set_paused",
    "history",
    "list_pending",
    "batch_in_flight",
    "dead_letters",
    "dead_letter",
)
_SNAPSHOT = "snapshot"


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """What the owner's store reads say, for an acceptor's buffer, readiness and metrics."""

    available: bool
    #: integration id → (pending, in flight, oldest receipt time)
    lanes: dict[int, tuple[int, int, float | None]]
    oldest: float | None
    unsettled: int
    ledger: Ledger
    dead_letters: int
    paused: frozenset[int]


def snapshot(store: Store) -> Snapshot:
    lanes = {i: (store.pending(i), store.in_flight(i), store.oldest_received(i)) for i in store.lanes()}
    return Snapshot(
        store.available(),
        lanes,
        store.oldest_received(),
        store.unsettled(),
        store.ledger(),
        store.dead_letter_count(),
        store.paused(),
    )


class _Method(typing.NamedTuple):
    names: tuple[str, ...]
    args: msgspec.msgpack.Decoder[Any]
    result: msgspec.msgpack.Decoder[Any]


def _methods() -> dict[str, _Method]:
    """Each relayed method's parameter names and the decoders of its arguments and its result,
    from the `Store` protocol's annotations."""
    methods = {}
    for name in _RELAYED:
        function = getattr(Store, name)
        hints = typing.get_type_hints(function)
        names = tuple(p for p in inspect.signature(function).parameters if p != "self")
        arguments = tuple.__class_getitem__(tuple(hints[p] for p in names))
        methods[name] = _Method(names, msgspec.msgpack.Decoder(arguments), msgspec.msgpack.Decoder(hints["return"]))
    methods[_SNAPSHOT] = _Method((), msgspec.msgpack.Decoder(tuple[()]), msgspec.msgpack.Decoder(Snapshot))
    return methods


_METHODS = _methods()
_CALL = msgspec.msgpack.Decoder(tuple[int, str, msgspec.Raw])
_ANSWER = msgspec.msgpack.Decoder(tuple[int, bool, msgspec.Raw])
_REFUSAL = msgspec.msgpack.Decoder(tuple[str, str])
_ENCODER = msgspec.msgpack.Encoder()


def _frame(message: object) -> bytes:
    body = _ENCODER.encode(message)
    return _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > _MAX_FRAME:
        raise ValueError(f"a frame of {length} bytes")
    return await reader.readexactly(length)


# ------------------------------------------------------------------ the owner's side

#: how the owner's refusal of a call reaches the acceptor: (kind, text) → the exception raised
_UNAVAILABLE, _FULL, _CLOSED, _FAILED = "unavailable", "full", "closed", "failed"


def _refusal(exc: Exception) -> tuple[str, str]:
    """What the acceptor is told of a failed call — never an exception's text beyond the
    store's own (it is logged there as the webhook's `cause`; a bug's text could carry data)."""
    if isinstance(exc, BufferFull):
        return _FULL, ""
    if isinstance(exc, BufferClosed):
        return _CLOSED, ""
    if isinstance(exc, StoreUnavailable):
        return _UNAVAILABLE, str(exc)
    return _FAILED, f"the store's owner failed on this call ({type(exc).__name__}; see its store.relay_error)"


class StoreHost:
    """The owner's end: answers the acceptors' store calls on a Unix socket (only the owner's
    user may connect), calling its `SqliteStore` — an order version through `admit` (the owner's
    `Buffer.admit`: the same rules and lane timers as its own webhooks')."""

    def __init__(self, store: SqliteStore, path: str, admit: Callable[[Arrival], Awaitable[AddResult]]) -> None:
        self._store = store
        self._path = path
        self._admit = admit
        self._server: asyncio.Server | None = None
        self._closing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        folder = os.path.dirname(self._path)
        os.makedirs(folder, mode=0o700, exist_ok=True)  # a temporary folder cleaned away meanwhile
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)  # left by an owner that was killed
        previous = os.umask(0o177)  # the socket is the owner's user's from its first moment
        try:
            self._server = await asyncio.start_unix_server(self._serve, self._path)
        finally:
            os.umask(previous)
        _log.info("store.hosting", socket=self._path)

    async def close(self) -> None:
        """Answer the calls under way, refuse any more (503 at the acceptor) and stop; called
        before the store closes."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        while self._calls:
            await asyncio.gather(*list(self._calls), return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One acceptor's connection: each call runs as a task of its own (the adds of every
        worker share the group commits), at most `MAX_CALLS` at once — beyond that the owner
        stops reading, and the acceptor's writes wait (backpressure instead of a queue)."""
        self._writers.add(writer)
        slots = asyncio.Semaphore(MAX_CALLS)
        try:
            while True:
                number, method, raw = _CALL.decode(await _read_frame(reader))
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(self._answer(writer, number, method, raw))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
                task.add_done_callback(lambda _: slots.release())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the acceptor went away
        except (ValueError, msgspec.DecodeError) as exc:  # not a relay: drop it
            _log.error("store.relay_refused", cause=str(exc)[:200])
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, number: int, method: str, raw: msgspec.Raw) -> None:
        try:
            if self._closing:
                raise StoreUnavailable("the store's owner is stopping")
            result = await self._call(method, raw)
        except Exception as exc:  # the acceptor answers its webhook 503 with this
            if not isinstance(exc, StoreUnavailable | BufferFull | BufferClosed):
                _log.exception("store.relay_error", method=method)
            answer: tuple[int, bool, object] = (number, False, _refusal(exc))
        else:
            answer = (number, True, result)
        if number and not writer.is_closing():
            writer.write(_frame(answer))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def _call(self, method: str, raw: msgspec.Raw) -> object:
        spec = _METHODS.get(method)
        if spec is None:
            raise ValueError(f"no such store call: {method!r}")
        arguments = dict(zip(spec.names, spec.args.decode(raw), strict=True))
        store = self._store
        if method == _SNAPSHOT:
            return snapshot(store)
        if method == "add":
            arrival: Arrival = arguments["arrival"]
            delivery = arrival.delivery_id
            if delivery is not None and store.seen_delivery(arrival.integration_id, delivery, arrival.received_at):
                return AddResult.DUPLICATE  # taken by another worker (or the owner)
            return await self._admit(arrival)
        result = getattr(store, method)(**arguments)
        if inspect.isawaitable(result):
            result = await result
        if method == "set_paused":
            store.changed_elsewhere([arguments["integration_id"]])
        return result


# ------------------------------------------------------------------ an acceptor's side


def _refused(kind: str, text: str) -> Exception:
    """The exception an acceptor raises for the owner's refusal of a call: the webhook then
    answers as the owner's own would (503 `buffer_full`, `shutting_down`, `store_unavailable`)."""
    if kind == _FULL:
        return BufferFull()
    if kind == _CLOSED:
        return BufferClosed()
    return StoreUnavailable(text)


def socket_path(store_file: Path) -> tuple[str, str | None]:
    """Where the owner of `store_file` listens, and the temporary folder made for it (None when
    none was): beside the file (`<file>.sock`, as its `<file>.lock`: a folder the service's user
    owns and nothing cleans by age) — or, for a path too long for a Unix socket (107 bytes), in
    a new private temporary folder."""
    beside = os.path.abspath(str(store_file)) + ".sock"
    if len(os.fsencode(beside)) <= _SOCKET_PATH_MAX:
        return beside, None
    folder = tempfile.mkdtemp(prefix="order-bridge-")
    return os.path.join(folder, "store.sock"), folder


class RelayStore:
    """An acceptor's `Store`: its calls go to the owner's `StoreHost`; it never flushes."""

    durable = True

    def __init__(self, path: str, settings: StoreSettings) -> None:
        self.path = path
        self.settings = settings
        self._deliveries = SeenDeliveries(settings.dedupe_ttl, settings.dedupe_max_entries)
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[msgspec.Raw]] = {}
        self._number = 0
        self._snapshot = Snapshot(False, {}, None, 0, Ledger(0, 0, 0, 0, 0), 0, frozenset())
        self._snapshot_at = -1e9
        self._connected = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._waited = False

    # ------------------------------------------------------------ the connection

    async def connect(self) -> None:
        """Keep a connection to the owner from now on; wait up to `CONNECT_WAIT` seconds for the
        first (the owner may still be reading its file), then serve anyway — answering 503 until
        the owner answers. Called again (the CLI connects before serving, the app's start-up
        too), it keeps the same connection and waits no more."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._stay_connected(), name="store-relay")
        if self._waited:
            return
        self._waited = True
        try:
            await asyncio.wait_for(self._connected.wait(), CONNECT_WAIT)
        except TimeoutError:
            _log.error("store.owner_unreachable", socket=self.path, seconds=CONNECT_WAIT)

    async def _stay_connected(self) -> None:
        quiet = True  # at start the owner is still opening its file: `connect` says if it takes long
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                if not quiet:
                    _log.warning("store.owner_unreachable", socket=self.path, cause=exc.strerror or str(exc))
                    quiet = True
                await asyncio.sleep(_RECONNECT_PAUSE)
                continue
            quiet = False
            self._writer = writer
            polling = asyncio.get_running_loop().create_task(self._poll())
            try:
                await self._read(reader)
            finally:
                polling.cancel()
                self._writer = None
                self._connected.clear()
                self._snapshot_at = -1e9
                writer.close()
                self._fail_waiting("the store's owner (the first worker) went away")
            if not self._closing:  # a warning: at a shutdown of all workers the owner may close first
                _log.warning("store.owner_lost", socket=self.path)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Answers until the connection ends — or carries what is not an answer (an owner of
        another version?): then it is dropped and made anew."""
        try:
            while True:
                number, ok, raw = _ANSWER.decode(await _read_frame(reader))
                future = self._waiting.pop(number, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(raw)
                else:
                    future.set_exception(_refused(*_REFUSAL.decode(raw)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, msgspec.DecodeError) as exc:
            _log.error("store.relay_refused", socket=self.path, cause=str(exc)[:200])

    async def _poll(self) -> None:
        failed = False
        while True:
            try:
                self._snapshot = await self._call(_SNAPSHOT, ())
                self._snapshot_at = time.monotonic()
                self._connected.set()
                failed = False
            except StoreUnavailable:
                pass
            except (ValueError, msgspec.DecodeError) as exc:  # an answer of another shape
                if not failed:
                    _log.error("store.relay_refused", socket=self.path, cause=str(exc)[:200])
                failed = True
            await asyncio.sleep(SNAPSHOT_EVERY)

    def _fail_waiting(self, why: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StoreUnavailable(why))

    def _send(self, method: str, arguments: Sequence[object], number: int = 0) -> asyncio.StreamWriter:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise StoreUnavailable("the store's owner (the first worker) is not running")
        writer.write(_frame((number, method, arguments)))
        return writer

    async def _call(self, method: str, arguments: Sequence[object]) -> Any:
        """One call, answered — or `StoreUnavailable` once the owner has not answered within
        `CALL_TIMEOUT` (the call may still run there: every call is safe to repeat)."""
        self._number += 1
        number = self._number
        future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        writer = self._send(method, arguments, number)
        self._waiting[number] = future
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                with contextlib.suppress(ConnectionError):  # the reader fails the call
                    await writer.drain()  # the owner reads no faster than it answers
                raw = await future
        except TimeoutError:
            raise StoreUnavailable(f"the store's owner did not answer within {CALL_TIMEOUT:g} s") from None
        finally:
            self._waiting.pop(number, None)
        return _METHODS[method].result.decode(raw)

    def _tell(self, method: str, arguments: Sequence[object]) -> None:
        """A call nobody waits for; lost with the connection (a delivery id, a history step)."""
        with contextlib.suppress(StoreUnavailable):
            self._send(method, arguments)

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiting("the store is closing")

    # ------------------------------------------------------------ the flusher's: the owner's

    def flushing(self) -> bool:
        return False

    def watch(self, changed: Callable[[Iterable[int], bool], None]) -> None:
        """An acceptor never flushes: the owner's buffer learns of the lanes it fills."""

    async def take(self, integration_id: int, limit: int, *, batch_id: str, attempt: int) -> Batch | None:
        raise NotFlusher("an acceptor worker does not flush: the first worker does")

    async def settle(self, batch: Batch, settlement: Settlement) -> Settled:
        raise NotFlusher("an acceptor worker does not flush: the first worker does")

    async def recover(self) -> tuple[Batch, ...]:
        """The owner recovers what its last run left in flight."""
        return ()

    async def prune(self, now: float) -> int:
        """The owner prunes its file."""
        return 0

    # ------------------------------------------------------------ relayed writes

    async def add(self, arrival: Arrival) -> AddResult:
        result: AddResult = await self._call("add", (arrival,))
        delivery = arrival.delivery_id
        if delivery is not None and result is not AddResult.DUPLICATE:
            self._deliveries.remember(SeenDeliveries.key(arrival.integration_id, delivery), arrival.received_at)
        return result

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> Settled:
        settled: Settled = await self._call("add_dead_letters", (tuple(letters),))
        return settled

    def seen_delivery(self, integration_id: int, delivery_id: str, now: float) -> bool:
        """This worker's deliveries; the others' are caught by the owner inside `add`."""
        return self._deliveries.seen(SeenDeliveries.key(integration_id, delivery_id), now)

    def remember_delivery(self, integration_id: int, delivery_id: str, now: float) -> None:
        self._deliveries.remember(SeenDeliveries.key(integration_id, delivery_id), now)
        self._tell("remember_delivery", (integration_id, delivery_id, now))

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        self._tell("record_history", (tuple(events),))

    async def resolve_dead_letter(self, letter_id: int, how: Resolution) -> DeadLetter | None:
        letter: DeadLetter | None = await self._call("resolve_dead_letter", (letter_id, how))
        return letter

    async def dead_letter_failed_again(self, letter_id: int, detail: str, at: float) -> DeadLetter | None:
        letter: DeadLetter | None = await self._call("dead_letter_failed_again", (letter_id, detail, at))
        return letter

    async def dead_letter_webhook(self, letter_id: int) -> bytes | None:
        body: bytes | None = await self._call("dead_letter_webhook", (letter_id,))
        return body

    async def set_paused(self, integration_id: int, paused: bool) -> None:
        await self._call("set_paused", (integration_id, paused))

    # ------------------------------------------------------------ relayed reads

    async def history(
        self, integration_id: int, *, order_id: str | None = None, order_number: str | None = None
    ) -> list[HistoryEvent]:
        steps: list[HistoryEvent] = await self._call("history", (integration_id, order_id, order_number))
        return steps

    async def list_pending(self, integration_id: int, limit: int = 100) -> list[Entry]:
        entries: list[Entry] = await self._call("list_pending", (integration_id, limit))
        return entries

    async def batch_in_flight(self, integration_id: int) -> Batch | None:
        batch: Batch | None = await self._call("batch_in_flight", (integration_id,))
        return batch

    async def dead_letters(
        self,
        integration_id: int | None = None,
        limit: int | None = None,
        *,
        reason: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[DeadLetter]:
        letters: list[DeadLetter] = await self._call("dead_letters", (integration_id, limit, reason, since, after))
        return letters

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        letter: DeadLetter | None = await self._call("dead_letter", (letter_id,))
        return letter

    # ------------------------------------------------------------ the owner's snapshot

    def available(self) -> bool:
        fresh = time.monotonic() - self._snapshot_at < 4 * SNAPSHOT_EVERY
        return fresh and self._writer is not None and self._snapshot.available

    def lanes(self) -> tuple[int, ...]:
        return tuple(self._snapshot.lanes)

    def pending(self, integration_id: int) -> int:
        lane = self._snapshot.lanes.get(integration_id)
        return lane[0] if lane else 0

    def in_flight(self, integration_id: int) -> int:
        lane = self._snapshot.lanes.get(integration_id)
        return lane[1] if lane else 0

    def unsettled(self) -> int:
        return self._snapshot.unsettled

    def oldest_received(self, integration_id: int | None = None) -> float | None:
        if integration_id is None:
            return self._snapshot.oldest
        lane = self._snapshot.lanes.get(integration_id)
        return lane[2] if lane else None

    def ledger(self) -> Ledger:
        return self._snapshot.ledger

    def dead_letter_count(self) -> int:
        return self._snapshot.dead_letters

    def paused(self) -> frozenset[int]:
        return self._snapshot.paused

"""`PostgresStore`: the `Store` on one PostgreSQL database shared by every replica.

Any replica accepts; one flushes per Sendcloud account — the holder of the account's lease
(`service.lease.LeaseKeeper`, run here), whose takes and settles are fenced by it. Writes go
to the database before they answer: a webhook's arrival joins the next *group* (one
transaction for every arrival waiting, `sql.accept_rows`), so one commit serves many webhooks.

The buffer reads counts all the time (every webhook, every timer), and those cannot wait for a
round trip: they come from a **view** of the database kept in this process — refreshed every
`poll_seconds` and soon after another replica's commit notifies `order_bridge_lanes`, and
moved on at once by this process's own writes. A refresh keeps what this process wrote while it
read (the view is the database's counts plus this process's changes since the read began), so
the view is never behind this process's own commits, and catches up with the others' within a
poll. Lanes another replica filled or paused are reported to the buffer (`watch`), which then
wakes them — the flusher's way of hearing of orders it did not accept.

Admin reads (dead letters, pending entries, histories) go to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog

from adapters.sendcloud import EncodedOrder
from service.clock import Clock, SystemClock
from service.dedupe import SeenDeliveries
from service.lease import LeaseKeeper, LostLease
from service.store import (
    DEFAULT_SETTINGS,
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
    StoreOpenError,
    StoreSettings,
    StoreUnavailable,
)
from service.store.memory import received
from service.store.postgres import sql
from service.store.postgres.schema import migrate

__all__ = ["REFRESH_GAP", "PostgresStore", "redacted"]

_log = structlog.get_logger("order_bridge.store")

#: what a database that cannot be reached (or refuses) raises
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

_HISTORY_ENCODER = msgspec.json.Encoder()
_HISTORY_DECODER = msgspec.json.Decoder(HistoryEvent)

_LETTER_COLUMNS = (
    "id, integration_id, platform, order_id, reason, detail, pointer, delivery_id, body, at, batch_id, "
    "order_number, attempts"
)


def redacted(url: str) -> str:
    """The URL for messages and logs: the user name, the host, port and database; never the
    password (whatever characters it holds, encoded or not) nor the query (`?password=…`)."""
    scheme, found, rest = url.partition("://")
    if not found:
        return "(a URL that is not scheme://…)"
    userinfo, at, place = rest.rpartition("@")
    place = place.split("?", 1)[0].split("#", 1)[0]
    if not at:
        return f"{scheme}://{place}"
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{place}"


def _letter(row: Any) -> DeadLetter:
    body = row["body"]
    return DeadLetter(
        integration_id=row["integration_id"],
        platform=row["platform"],
        order_id=row["order_id"],
        reason=row["reason"],
        detail=row["detail"],
        pointer=row["pointer"],
        delivery_id=row["delivery_id"],
        order=EncodedOrder(row["order_id"] or "", bytes(body)) if body is not None else None,
        at=row["at"],
        batch_id=row["batch_id"],
        id=row["id"],
        order_number=row["order_number"],
        attempts=row["attempts"],
    )


@dataclass(slots=True)
class _View:
    """What this process knows of the database's counts: the last read, plus its own writes since."""

    #: integration id → [pending, in flight, oldest receipt (inf: none)]
    lanes: dict[int, list[float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(sql.COUNTERS, 0))
    dead_letters: int = 0
    paused: frozenset[int] = frozenset()

    def lane(self, integration_id: int) -> list[float]:
        counts = self.lanes.get(integration_id)
        if counts is None:
            counts = self.lanes[integration_id] = [0, 0, float("inf")]
        return counts


#: a change one of this process's transactions made, applied to a view
_Change = Callable[[_View], None]

#: a lane's oldest unsettled receipt time, through the two partial indexes (never the sent rows)
_OLDEST = (
    "SELECT least((SELECT min(p_received_at) FROM orders WHERE integration_id = $1 AND p_seq IS NOT NULL), "
    "(SELECT min(f_received_at) FROM orders WHERE integration_id = $1 AND f_seq IS NOT NULL))"
)

#: the id of the transaction a statement runs in (64 bits: it never wraps)
_XID = "SELECT pg_current_xact_id()::text::bigint"


def _visible(snapshot: str, xid: int) -> bool:
    """Whether a transaction's work is visible in a snapshot (`pg_current_snapshot()` as text:
    `xmin:xmax:xip,…`) — committed before it was taken."""
    xmin, xmax, running = snapshot.split(":")
    if xid < int(xmin):
        return True
    return xid < int(xmax) and str(xid) not in running.split(",")


@dataclass(slots=True)
class _Job:
    arrival: Arrival
    done: asyncio.Future[AddResult]


#: seconds between two reads of the view at least (a notification wakes the next one sooner
#: than the poll, never sooner than this)
REFRESH_GAP = 0.2


class PostgresStore:
    """The `Store` on a PostgreSQL database (`[store] url = "postgresql://…"`, DESIGN §4)."""

    durable = True

    def __init__(
        self,
        url: str,
        *,
        account: str,
        settings: StoreSettings = DEFAULT_SETTINGS,
        clock: Clock | None = None,
        holder: str | None = None,
        password_file: Path | None = None,
        poll_seconds: float = 1.0,
        lease_seconds: float = 10.0,
        heartbeat_seconds: float = 3.0,
        command_timeout: float = 5.0,
        pool_size: int = 8,
        writers: int = 3,
    ) -> None:
        self.url = url
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.account = account
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._password_file = password_file
        self._poll = poll_seconds
        self._lease_seconds = lease_seconds
        self._heartbeat = heartbeat_seconds
        self._command_timeout = command_timeout
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None
        self._keeper: LeaseKeeper | None = None
        self._listener: asyncpg.Connection | None = None
        self._view = _View()
        #: this process's committed changes not yet seen in a read of the database: (xid, change)
        self._mine: list[tuple[int, _Change]] = []
        self._deliveries = SeenDeliveries(settings.dedupe_ttl, settings.dedupe_max_entries)
        self._jobs: list[_Job] = []
        self._later_deliveries: dict[str, float] = {}
        self._later_history: list[HistoryEvent] = []
        #: writers at work, and at most how many
        self._writing = 0
        self._max_writers = writers
        self._busy = 0
        self._available = True
        self._watchers: list[Callable[[Iterable[int], bool], None]] = []
        #: the lease generation this process last held (None: not the flusher)
        self._leading: int | None = None
        #: the lease generation `recover()` last ran under
        self._recovered_under = -1
        self._stopping = asyncio.Event()
        self._nudge = asyncio.Event()
        self._maintenance: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the pool, bring the schema up to date, try for the lease once, read the view and
        start listening. `StoreOpenError` (one line, no password) when the database cannot be used.
        Once connected, another call does nothing."""
        if self._pool is not None:
            return
        try:
            self._pool = await self._open_pool(self._pool_size)
            # the webhooks' writers have connections of their own: flushes, reads and the admin
            # never make a webhook wait for a connection
            self._write_pool = await self._open_pool(self._max_writers)
            async with self._pool.acquire() as connection:
                await migrate(connection)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError, ValueError) as exc:
            for pool in (self._pool, self._write_pool):
                if pool is not None:
                    await pool.close()
            self._pool = self._write_pool = None
            raise StoreOpenError(
                f"the PostgreSQL store at {redacted(self.url)} cannot be used: {self._scrubbed(_cause(exc))}"
            ) from None
        self._keeper = LeaseKeeper(
            self._pool, self.account, self.holder, self.clock, ttl=self._lease_seconds, heartbeat=self._heartbeat
        )
        await self._keeper.step()
        lease = self._keeper.held()
        self._leading = lease.generation if lease is not None else None
        try:
            await self._refresh()
        except StoreUnavailable as exc:
            await self._keeper.stop()
            for pool in (self._pool, self._write_pool):
                await pool.close()
            self._pool = self._write_pool = None
            raise StoreOpenError(
                f"the PostgreSQL store at {redacted(self.url)} cannot be used: {self._scrubbed(str(exc))}"
            ) from None
        await self._listen()
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain(), name="store-maintenance")

    def _scrubbed(self, text: str) -> str:
        """`text` (a driver's message) without the URL or anything of its user information."""
        text = text.replace(self.url, redacted(self.url))
        userinfo = self.url.partition("://")[2].rpartition("@")[0]
        secret = userinfo.partition(":")[2]
        return text.replace(secret, "***") if secret else text

    async def _open_pool(self, size: int) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=size,
            command_timeout=self._command_timeout,
            password=self._password() if self._password_file is not None else None,
            timeout=self._command_timeout,
        )

    def _password(self) -> Callable[[], str]:
        """The password, read from its file at each new connection (a rotated secret is picked up)."""
        path = self._password_file
        assert path is not None
        return lambda: path.read_text().strip()

    async def close(self) -> None:
        self._stopping.set()
        self._nudge.set()  # the maintenance loop stops now, not at its next poll
        if self._maintenance is not None:
            await asyncio.gather(self._maintenance, return_exceptions=True)
        while self._writing > 0:
            await asyncio.sleep(0.01)
        if self._keeper is not None:
            await self._keeper.stop()
        if self._listener is not None:
            with contextlib.suppress(*_UNREACHABLE):
                await self._listener.close(timeout=2)
        for pool in (self._pool, self._write_pool):
            if pool is not None:
                await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self, *, writer: bool = False) -> AsyncIterator[Any]:
        """A pooled connection (of the writers' pool for a group commit); any failure to reach
        the database becomes `StoreUnavailable`."""
        pool = self._write_pool if writer else self._pool
        if pool is None:
            raise StoreUnavailable("the store is not connected")
        self._busy += 1
        try:
            async with pool.acquire(timeout=self._command_timeout) as connection:
                yield connection
        except LostLease as exc:
            raise NotFlusher(str(exc)) from None
        except _UNREACHABLE as exc:
            self._available = False
            raise StoreUnavailable(_cause(exc)) from None
        finally:
            self._busy -= 1
        self._available = True

    def writing(self) -> bool:
        """True while a group waits to commit or a statement is on its way (tests on a fake
        clock wait for this to pass before they move time on)."""
        return self._writing > 0 or self._busy > 0

    # ------------------------------------------------------------ keeping the view

    async def _maintain(self) -> None:
        """Every poll (sooner after a notification, but at most every `REFRESH_GAP` seconds: every
        replica's commits notify, hundreds a second under load): the view read again; every
        heartbeat: the lease renewed or tried for, and the ledger's delta rows folded by the
        flusher."""
        assert self._keeper is not None
        next_beat = self.clock.monotonic() + self._heartbeat
        while not self._stopping.is_set():
            self._nudge.clear()
            await self.clock.wait(self._nudge, self._poll)
            if self._stopping.is_set():
                return
            await self.clock.wait(self._stopping, REFRESH_GAP)
            if self._stopping.is_set():
                return
            try:
                if self.clock.monotonic() >= next_beat:
                    next_beat = self.clock.monotonic() + self._heartbeat
                    await self._keeper.step()
                    if self._keeper.held() is not None:
                        async with self._connection() as connection:
                            await sql.fold_counts(connection)
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self._refresh()
            except StoreUnavailable as exc:
                _log.warning("store.refresh_failed", cause=str(exc))
            except Exception:
                _log.exception("store.maintenance_error")
            # a new generation — taken over, or taken again after this process's own lease ran
            # out — must recover before it flushes
            lease = self._keeper.held()
            generation = lease.generation if lease is not None else None
            if generation != self._leading:
                self._leading = generation
                if generation is not None:
                    self._tell(self.lanes(), took_over=True)

    async def _listen(self) -> None:
        """A connection of its own for LISTEN (notifications can be missed while it is down:
        the poll catches up)."""
        listener: asyncpg.Connection | None = None
        try:
            listener = await asyncpg.connect(
                self.url,
                timeout=self._command_timeout,
                password=self._password() if self._password_file is not None else None,
            )
            await listener.add_listener(sql.CHANNEL, self._notified)
            self._listener = listener
        except _UNREACHABLE as exc:
            self._listener = None
            if listener is not None:
                with contextlib.suppress(*_UNREACHABLE):
                    await listener.close(timeout=2)
            _log.warning("store.listen_failed", cause=self._scrubbed(_cause(exc)))

    def _notified(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        self._nudge.set()

    async def _refresh(self) -> None:
        """Read the counts again. The view is the read plus this process's changes whose
        transactions the read did not see (told apart by the read's snapshot): exact, never
        counting one of its own commits twice. Lanes others filled, paused or resumed are told
        to the watchers."""
        async with self._connection() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
            snapshot = str(await connection.fetchval("SELECT pg_current_snapshot()::text"))
            lanes = await sql.lane_snapshot(connection)
            counts = await sql.counter_values(connection)  # pending: the lanes' counts
            letters = int(await connection.fetchval("SELECT count(*) FROM dead_letters"))
            rows = await connection.fetch("SELECT integration_id FROM paused_lanes")
        fresh = _View()
        for integration_id, counted in lanes.items():
            fresh.lanes[integration_id] = [counted.pending, counted.in_flight, counted.oldest_received]
        fresh.counters = {name: counts.get(name, 0) for name in sql.COUNTERS}
        fresh.dead_letters = letters
        fresh.paused = frozenset(int(row["integration_id"]) for row in rows)
        self._mine = [(xid, change) for xid, change in self._mine if not _visible(snapshot, xid)]
        for _, change in self._mine:
            change(fresh)
        old, self._view = self._view, fresh
        changed = {i for i, lane in fresh.lanes.items() if lane[0] > old.lanes.get(i, [0, 0, 0.0])[0]}
        changed |= fresh.paused ^ old.paused
        if changed:
            self._tell(changed, took_over=False)

    def _record(self, xid: int, change: _Change) -> None:
        """One of this process's transactions (`xid`) committed `change`: the view has it now."""
        change(self._view)
        self._mine.append((xid, change))

    def _tell(self, integration_ids: Iterable[int], *, took_over: bool) -> None:
        ids = tuple(integration_ids)
        for watcher in self._watchers:
            watcher(ids, took_over)

    def watch(self, changed: Callable[[Iterable[int], bool], None]) -> None:
        self._watchers.append(changed)

    def flushing(self) -> bool:
        """Holding the lease, and `recover()` ran under it: a new flusher first puts back (and
        the buffer holds) what the last one left in flight, then sends."""
        lease = self._keeper.held() if self._keeper is not None else None
        return lease is not None and lease.generation == self._recovered_under

    # ------------------------------------------------------------ writes

    async def add(self, arrival: Arrival) -> AddResult:
        """Join the next group commit; answers once it committed."""
        done: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(arrival, done))
        self._write_soon()
        return await done

    def _write_soon(self) -> None:
        """A writer for what is queued, unless `writers` are at work already (one of them takes
        it when its commit is done)."""
        if self._writing < self._max_writers:
            self._writing += 1
            asyncio.get_running_loop().create_task(self._write(), name="store-write")

    async def _write(self) -> None:
        """Groups, one after another: everything that queued while the last one committed. A
        few writers at once keep the database busy while each waits for its commit (the
        version rules hold whichever commits first: they are decided under the row lock)."""
        try:
            while self._jobs or self._later_deliveries or self._later_history:
                jobs, self._jobs = self._jobs, []
                deliveries, self._later_deliveries = self._later_deliveries, {}
                steps, self._later_history = self._later_history, []
                try:
                    results = await self._commit_group([job.arrival for job in jobs], deliveries, steps)
                except Exception as exc:  # the webhooks get 503 (a bug too: nothing hangs)
                    if isinstance(exc, StoreUnavailable):
                        cause = str(exc)
                    else:
                        _log.exception("store.write_error")
                        cause = f"internal error ({type(exc).__name__})"
                    for job in jobs:
                        if not job.done.done():
                            job.done.set_exception(StoreUnavailable(cause))
                    continue
                for job, result in zip(jobs, results, strict=True):
                    if not job.done.done():
                        job.done.set_result(result)
        finally:
            self._writing -= 1

    async def _commit_group(
        self, arrivals: list[Arrival], deliveries: dict[str, float], steps: list[HistoryEvent]
    ) -> list[AddResult]:
        if not deliveries:  # the common group: one statement, one round trip
            rows = [(e.integration_id, e.order_id, e.order_number, e.at, _HISTORY_ENCODER.encode(e)) for e in steps]
            async with self._connection(writer=True) as connection:
                done = await sql.accept_at_once(connection, arrivals, rows, dedupe_ttl=self.settings.dedupe_ttl)
            if done is not None:
                results, xid = done
                # the arrivals' own steps ride with the next group (or a statement of their own)
                self._later_history += [received(a, r) for a, r in zip(arrivals, results, strict=True)]
                self._remember_taken(arrivals)
                self._record(xid, _accepted(arrivals, results, 0))
                return results
        gone: list[Any] = []
        async with self._connection(writer=True) as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            results = await sql.accept_rows(connection, arrivals, dedupe_ttl=self.settings.dedupe_ttl)
            replayed = [a.replay_of for a in arrivals if a.replay_of is not None]
            if replayed:
                gone = await connection.fetch(
                    "DELETE FROM dead_letters WHERE id = ANY($1::bigint[]) RETURNING id", replayed
                )
                await sql.count(connection, replayed=len(gone))
            if deliveries:
                await sql.remember_deliveries(connection, deliveries)
            steps = steps + [received(a, r) for a, r in zip(arrivals, results, strict=True)]
            await self._insert_history(connection, steps)
        self._remember_taken(arrivals)
        self._record(xid, _accepted(arrivals, results, len(gone)))
        return results

    def _remember_taken(self, arrivals: Sequence[Arrival]) -> None:
        for arrival in arrivals:
            if arrival.delivery_id is not None:
                key = SeenDeliveries.key(arrival.integration_id, arrival.delivery_id)
                self._deliveries.remember(key, arrival.received_at)

    async def _insert_history(self, connection: asyncpg.Connection, steps: Sequence[HistoryEvent]) -> None:
        """One statement for a group's steps (a row each)."""
        if steps:
            await connection.execute(
                "INSERT INTO history (integration_id, order_id, order_number, at, step) "
                "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::bytea[])",
                [e.integration_id for e in steps],
                [e.order_id for e in steps],
                [e.order_number for e in steps],
                [e.at for e in steps],
                [_HISTORY_ENCODER.encode(e) for e in steps],
            )

    def seen_delivery(self, integration_id: int, delivery_id: str, now: float) -> bool:
        """This process's deliveries; another replica's are caught inside `add` (`DUPLICATE`)."""
        return self._deliveries.seen(SeenDeliveries.key(integration_id, delivery_id), now)

    def remember_delivery(self, integration_id: int, delivery_id: str, now: float) -> None:
        key = SeenDeliveries.key(integration_id, delivery_id)
        self._later_deliveries[key] = self._deliveries.remember(key, now)
        self._write_soon()

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Steps ride with the next group commit (one is started if none is on its way)."""
        self._later_history += events
        self._write_soon()

    async def take(self, integration_id: int, limit: int, *, batch_id: str, attempt: int) -> Batch | None:
        lease = self._lease()
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            batch = await sql.take(
                connection, lease, integration_id, limit, batch_id=batch_id, attempt=attempt, now=self.clock.wall()
            )
        if batch is None:
            # nothing pending after all: a view ahead of the database must not make the lane
            # ask again at once (the next read puts it right either way)
            self._view.lane(integration_id)[0] = 0
        elif batch.id == batch_id:
            moved = len(batch.entries)
            self._record(xid, lambda view: _lane_moved(view, integration_id, -moved, moved))
        return batch

    async def settle(self, batch: Batch, settlement: Settlement) -> Settled:
        lease = self._lease()
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            settled = await sql.settle(connection, lease, batch, settlement, now=self.clock.wall())
            evicted = await self._evict(connection)
            oldest = await connection.fetchval(_OLDEST, batch.integration_id)
        change = _settled(batch, settlement, settled.superseded, len(evicted), oldest or float("inf"))
        self._record(xid, change)
        return replace(settled, evicted=evicted)

    def _lease(self) -> Any:
        """The lease takes and settles are fenced with: held, and recovered under (a process
        that took the lease again must put back what was in flight before it flushes)."""
        lease = self._keeper.held() if self._keeper is not None else None
        if lease is None or lease.generation != self._recovered_under:
            raise NotFlusher("this replica does not hold the flusher lease (or has not recovered under it)")
        return lease

    async def _evict(self, connection: asyncpg.Connection) -> tuple[DeadLetter, ...]:
        """The oldest dead letters beyond `dead_letter_capacity` leave."""
        rows = await connection.fetch(
            f"DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id "
            f"LIMIT greatest(0, (SELECT count(*) FROM dead_letters) - $1)) RETURNING {_LETTER_COLUMNS}",
            self.settings.dead_letter_capacity,
        )
        return tuple(_letter(row) for row in sorted(rows, key=lambda row: row["id"]))

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> Settled:
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            ids = [await sql.insert_dead_letter(connection, letter) for letter in letters]
            evicted = await self._evict(connection)
        added = len(letters) - len(evicted)
        self._record(xid, lambda view: _letters(view, added))
        kept = tuple(replace(letter, id=int(i), webhook=None) for letter, i in zip(letters, ids, strict=True))
        return Settled(0, evicted, kept)

    async def resolve_dead_letter(self, letter_id: int, how: Resolution) -> DeadLetter | None:
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            row = await connection.fetchrow(
                f"DELETE FROM dead_letters WHERE id = $1 RETURNING {_LETTER_COLUMNS}", letter_id
            )
            if row is not None:
                await sql.count(connection, **{how: 1})
        if row is None:
            return None
        self._record(xid, lambda view: _letters(view, -1, **{how: 1}))
        return _letter(row)

    async def dead_letter_failed_again(self, letter_id: int, detail: str, at: float) -> DeadLetter | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                "UPDATE dead_letters SET detail = $2, attempts = attempts + 1 WHERE id = $1 "
                f"RETURNING {_LETTER_COLUMNS}",
                letter_id,
                detail,
            )
        return _letter(row) if row is not None else None

    async def dead_letter_webhook(self, letter_id: int) -> bytes | None:
        async with self._connection() as connection:
            webhook = await connection.fetchval("SELECT webhook FROM dead_letters WHERE id = $1", letter_id)
        return bytes(webhook) if webhook is not None else None

    async def set_paused(self, integration_id: int, paused: bool) -> None:
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            if paused:
                await connection.execute(
                    "INSERT INTO paused_lanes (integration_id) VALUES ($1) ON CONFLICT DO NOTHING", integration_id
                )
            else:
                await connection.execute("DELETE FROM paused_lanes WHERE integration_id = $1", integration_id)
            await connection.execute("SELECT pg_notify($1, $2)", sql.CHANNEL, str(integration_id))

        def change(view: _View) -> None:
            view.paused = view.paused | {integration_id} if paused else view.paused - {integration_id}

        self._record(xid, change)

    async def prune(self, now: float) -> int:
        async with self._connection() as connection, connection.transaction():
            xid = int(await connection.fetchval(_XID))
            dropped = await connection.fetch(
                "DELETE FROM dead_letters WHERE at < $1 RETURNING id", now - self.settings.dead_letter_retention
            )
            await connection.execute("DELETE FROM deliveries WHERE expires_at <= $1", now)
            await connection.execute("DELETE FROM history WHERE at < $1", now - self.settings.history_retention)
            await sql.forget_sent(connection, self.settings.remember_sent)
        gone = len(dropped)
        self._record(xid, lambda view: _letters(view, -gone))
        return gone

    async def recover(self) -> tuple[Batch, ...]:
        """As the flusher, at start or on taking the lease over: the batches left in flight (by
        another flusher, or an earlier process) go back to pending, in front, to be sent again —
        for the buffer to hold their lanes first (the old request may still land). Nothing when
        not the flusher."""
        lease = self._keeper.held() if self._keeper is not None else None
        if lease is None:
            return ()
        async with self._connection() as connection:
            lanes = await connection.fetch("SELECT DISTINCT integration_id FROM orders WHERE f_seq IS NOT NULL")
            recovered = []
            for row in lanes:
                async with connection.transaction():
                    xid = int(await connection.fetchval(_XID))
                    # under the lane's lock, as take and settle: a settle of an earlier
                    # generation's flush cannot slip in between this read and the settle below
                    await sql.lane_lock(connection, int(row["integration_id"]))
                    flying = await self._in_flight(connection, int(row["integration_id"]))
                    if flying is None:
                        continue
                    back = Settlement((), (), (), flying.entries)
                    settled = await sql.settle(connection, lease, flying, back, now=self.clock.wall())
                self._record(xid, _settled(flying, back, settled.superseded, 0, None))
                recovered.append(flying)
        self._recovered_under = lease.generation
        return tuple(recovered)

    # ------------------------------------------------------------ reads from the view

    def available(self) -> bool:
        return self._available

    def lanes(self) -> tuple[int, ...]:
        return tuple(i for i, lane in self._view.lanes.items() if lane[0] or lane[1])

    def pending(self, integration_id: int) -> int:
        lane = self._view.lanes.get(integration_id)
        return int(lane[0]) if lane is not None else 0

    def in_flight(self, integration_id: int) -> int:
        lane = self._view.lanes.get(integration_id)
        return int(lane[1]) if lane is not None else 0

    def unsettled(self) -> int:
        return int(sum(lane[0] + lane[1] for lane in self._view.lanes.values()))

    def oldest_received(self, integration_id: int | None = None) -> float | None:
        if integration_id is None:
            oldest = min((lane[2] for lane in self._view.lanes.values() if lane[0] or lane[1]), default=float("inf"))
        else:
            lane = self._view.lanes.get(integration_id)
            oldest = lane[2] if lane is not None and (lane[0] or lane[1]) else float("inf")
        return None if oldest == float("inf") else oldest

    def ledger(self) -> Ledger:
        counters = self._view.counters
        return Ledger(
            accepted=counters["accepted"],
            sent=counters["sent"],
            superseded=counters["superseded"],
            dead_lettered=counters["dead_lettered"],
            pending=self.unsettled(),
            replayed=counters["replayed"],
            discarded=counters["discarded"],
        )

    def dead_letter_count(self) -> int:
        return self._view.dead_letters

    def paused(self) -> frozenset[int]:
        return self._view.paused

    # ------------------------------------------------------------ reads from the database

    async def list_pending(self, integration_id: int, limit: int = 100) -> list[Entry]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT order_id, platform, p_body, p_updated_at, p_seq, p_received_at, p_digest, p_delivery_id "
                "FROM orders WHERE integration_id = $1 AND p_seq IS NOT NULL ORDER BY p_position LIMIT $2",
                integration_id,
                limit,
            )
        return [sql.entry(integration_id, row, "p") for row in rows]

    async def batch_in_flight(self, integration_id: int) -> Batch | None:
        async with self._connection() as connection:
            return await self._in_flight(connection, integration_id)

    async def _in_flight(self, connection: asyncpg.Connection, integration_id: int) -> Batch | None:
        rows = await connection.fetch(
            f"SELECT {sql.ENTRY_COLUMNS} FROM orders WHERE integration_id = $1 AND f_seq IS NOT NULL", integration_id
        )
        if not rows:
            return None
        return Batch(rows[0]["f_batch"], integration_id, sql.entries(integration_id, rows), rows[0]["f_attempt"])

    async def dead_letters(
        self,
        integration_id: int | None = None,
        limit: int | None = None,
        *,
        reason: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[DeadLetter]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE id > $1 "
                "AND ($2::bigint IS NULL OR integration_id = $2) AND ($3::text IS NULL OR reason = $3) "
                "AND ($4::float8 IS NULL OR at >= $4) ORDER BY id LIMIT $5",
                after,
                integration_id,
                reason,
                since,
                limit,
            )
        return [_letter(row) for row in rows]

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE id = $1", letter_id)
        return _letter(row) if row is not None else None

    async def history(
        self, integration_id: int, *, order_id: str | None = None, order_number: str | None = None
    ) -> list[HistoryEvent]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT step FROM history WHERE integration_id = $1 AND (order_id = $2 OR order_id IN "
                "(SELECT order_id FROM history WHERE integration_id = $1 AND order_number = $3)) ORDER BY at, id",
                integration_id,
                order_id,
                order_number,
            )
        return [_HISTORY_DECODER.decode(row["step"]) for row in rows]


def _accepted(arrivals: Sequence[Arrival], results: Sequence[AddResult], replayed: int) -> _Change:
    """What a group of arrivals changed in the counts."""
    added: dict[int, list[float]] = {}
    accepted = superseded = 0
    for arrival, result in zip(arrivals, results, strict=True):
        if result is AddResult.COALESCED:
            accepted += 1
            superseded += 1
        elif result is AddResult.BUFFERED:
            accepted += 1
            lane = added.setdefault(arrival.integration_id, [0, float("inf")])
            lane[0] += 1
            lane[1] = min(lane[1], arrival.received_at)

    def change(view: _View) -> None:
        for integration_id, (count, oldest) in added.items():
            lane = view.lane(integration_id)
            lane[0] += count
            lane[2] = min(lane[2], oldest)
        view.counters["accepted"] += accepted
        view.counters["superseded"] += superseded
        view.counters["replayed"] += replayed
        view.dead_letters -= replayed

    return change


def _lane_moved(view: _View, integration_id: int, pending: int, in_flight: int) -> None:
    lane = view.lane(integration_id)
    lane[0] = max(0, lane[0] + pending)
    lane[1] = max(0, lane[1] + in_flight)
    if not lane[0] and not lane[1]:
        lane[2] = float("inf")


def _settled(batch: Batch, settlement: Settlement, superseded: int, evicted: int, oldest: float | None) -> _Change:
    """What applying Sendcloud's answer to a batch changed in the counts; `oldest`: the lane's
    oldest receipt time as the settling transaction saw it (None: unchanged)."""
    back = len(settlement.retry) - superseded

    def change(view: _View) -> None:
        _lane_moved(view, batch.integration_id, back, -len(batch.entries))
        if oldest is not None:
            view.lane(batch.integration_id)[2] = oldest
        view.counters["sent"] += len(settlement.sent)
        view.counters["dead_lettered"] += len(settlement.dead)
        view.counters["superseded"] += superseded
        view.dead_letters += len(settlement.dead) - evicted

    return change


def _letters(view: _View, added: int, **counted: int) -> None:
    view.dead_letters = max(0, view.dead_letters + added)
    for name, value in counted.items():
        view.counters[name] += value


def _cause(exc: BaseException) -> str:
    """What went wrong, in words that carry no password (asyncpg's messages name the user and
    the database at most)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

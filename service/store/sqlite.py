"""`SqliteStore`: the `Store` in one SQLite file — what was answered `accepted` survives `kill -9`.

Design:
- **Memory mirror, file of record.** Every decision (stale, coalesced, what a batch holds) is
  made on the event loop by a `MemoryStore` that mirrors the file, exactly as without SQLite;
  each change is then written to the file, and the call returns only once that write has
  committed. So `Buffer.add` — and the webhook's `accepted` — waits for the commit.
- **Group commit, the fsync in a thread.** Whatever is queued while a commit is in progress goes
  into the next transaction together (one fsync for many webhooks), which is where the
  throughput comes from: with `synchronous = FULL` a commit costs about as much as 20 single-row
  statements. The statements run on the event loop (microseconds each); the COMMIT, which waits
  on the disk, in a thread (`_Writer`).
- **A failed commit fails loudly and changes nothing.** Disk full, read-only, locked, corrupt:
  every caller in that transaction, and every change queued behind it, gets `StoreUnavailable`
  (the webhook answers 503 + Retry-After), and the mirror is read back from the file, which
  holds exactly what committed. `available()` is False until a commit succeeds again.
- **WAL mode**: readers (`check-config`, `sqlite3 state.db .backup`) never block the writer.
  `synchronous = "full"` survives power loss; `"normal"` survives a crash of the process (not
  of the machine) and commits faster (SQLite's documentation of WAL mode).

The schema carries its version in `PRAGMA user_version`; `_MIGRATIONS[n]` upgrades version n to
n + 1 at open. A file from a newer order-bridge stops start-up with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from adapters.sendcloud import EncodedOrder
from service.dedupe import SeenDeliveries
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
    StoreOpenError,
    StoreSettings,
    StoreUnavailable,
)
from service.store.memory import MemoryStore

__all__ = ["SCHEMA_VERSION", "SqliteStore", "StoreSummary", "summarize"]

_MIGRATIONS: tuple[str, ...] = (
    # 0 → 1: the first schema
    """
    CREATE TABLE pending (
        integration_id INTEGER NOT NULL,
        order_id TEXT NOT NULL,
        position REAL NOT NULL,            -- place in the lane's line (retries go in front)
        platform TEXT NOT NULL,
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        received_at REAL NOT NULL,         -- wall-clock POSIX seconds
        digest BLOB NOT NULL,
        delivery_id TEXT,
        body BLOB NOT NULL,                -- the Sendcloud order's JSON (personal data)
        compressed INTEGER NOT NULL,
        PRIMARY KEY (integration_id, order_id)
    ) WITHOUT ROWID;
    CREATE TABLE in_flight (
        integration_id INTEGER NOT NULL,
        order_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        idx INTEGER NOT NULL,              -- index in the batch
        platform TEXT NOT NULL,
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        received_at REAL NOT NULL,
        digest BLOB NOT NULL,
        delivery_id TEXT,
        body BLOB NOT NULL,
        compressed INTEGER NOT NULL,
        PRIMARY KEY (integration_id, order_id)
    ) WITHOUT ROWID;
    CREATE TABLE sent (
        integration_id INTEGER NOT NULL,
        order_id TEXT NOT NULL,
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        digest BLOB NOT NULL,
        sent_seq INTEGER NOT NULL,         -- order of sending, for pruning the oldest
        PRIMARY KEY (integration_id, order_id)
    ) WITHOUT ROWID;
    CREATE INDEX sent_by_age ON sent (integration_id, sent_seq);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        integration_id INTEGER NOT NULL,
        platform TEXT NOT NULL,
        order_id TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        pointer TEXT,
        delivery_id TEXT,
        body BLOB,
        compressed INTEGER NOT NULL DEFAULT 0,
        at REAL NOT NULL,
        batch_id TEXT
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 1 → 2: every order version in one table keyed by its arrival number, so rows are appended
    # at the end and a batch in flight is a list of numbers — an order's JSON is written once and
    # deleted once (schema 1 copied it from pending to in_flight, into B-trees keyed by order id:
    # about 1.5x the CPU per order, bench/sqlite_floor.py); delivery ids for dedupe; dead
    # letters keep the webhook body they came from.
    """
    CREATE TABLE versions (
        seq INTEGER PRIMARY KEY,           -- the store's arrival number (rowid: rows append)
        integration_id INTEGER NOT NULL,
        order_id TEXT NOT NULL,
        position REAL NOT NULL,            -- place in the lane's line (retries go in front)
        platform TEXT NOT NULL,
        updated_at REAL NOT NULL,
        received_at REAL NOT NULL,         -- wall-clock POSIX seconds
        digest BLOB NOT NULL,
        delivery_id TEXT,
        body BLOB NOT NULL,                -- the Sendcloud order's JSON (personal data)
        compressed INTEGER NOT NULL
    );
    INSERT INTO versions SELECT seq, integration_id, order_id, position, platform, updated_at,
        received_at, digest, delivery_id, body, compressed FROM pending;
    INSERT INTO versions SELECT seq, integration_id, order_id, 0, platform, updated_at,
        received_at, digest, delivery_id, body, compressed FROM in_flight;
    CREATE TABLE batch_versions (          -- each lane's batch in flight: which versions, in order
        seq INTEGER PRIMARY KEY,
        integration_id INTEGER NOT NULL,
        batch_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        idx INTEGER NOT NULL               -- index in the batch
    );
    INSERT INTO batch_versions SELECT seq, integration_id, batch_id, attempt, idx FROM in_flight;
    DROP TABLE pending;
    DROP TABLE in_flight;
    CREATE TABLE deliveries (              -- rowid: order of arrival (oldest pruned first)
        key TEXT NOT NULL,                 -- "<integration id>:<delivery id>"
        expires_at REAL NOT NULL           -- wall-clock POSIX seconds
    );
    ALTER TABLE dead_letters ADD COLUMN webhook BLOB;  -- the webhook body, zlib (personal data)
    """,
    # 2 → 3: what the admin API reads and changes — dead letters' order numbers and replay
    # attempts, paused lanes, and each order's history (ids, times and outcomes: no content).
    """
    ALTER TABLE dead_letters ADD COLUMN order_number TEXT;
    ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE paused_lanes (
        integration_id INTEGER PRIMARY KEY
    );
    CREATE TABLE history (                 -- id: order of arrival (oldest pruned first)
        id INTEGER PRIMARY KEY,
        integration_id INTEGER NOT NULL,
        order_id TEXT NOT NULL,
        order_number TEXT,
        at REAL NOT NULL,                  -- wall-clock POSIX seconds
        event BLOB NOT NULL                -- a HistoryEvent as JSON
    );
    CREATE INDEX history_by_order ON history (integration_id, order_id);
    CREATE INDEX history_by_number ON history (integration_id, order_number) WHERE order_number IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

#: a version's columns in `Entry` order after the key (`_entry`), and the same with an empty
#: body in its place: what the mirror reads of a pending row
_ENTRY_COLUMNS = "platform, updated_at, seq, received_at, digest, delivery_id, body, compressed"
_BODILESS_COLUMNS = "platform, updated_at, seq, received_at, digest, delivery_id, x'', compressed"
_INSERT_VERSION = (
    "INSERT INTO versions (seq, integration_id, order_id, position, platform, updated_at, received_at, "
    "digest, delivery_id, body, compressed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: a coalesced version takes the place (row position and line position) of the one it replaces
_REPLACE_VERSION = (
    "UPDATE versions SET seq = ?, platform = ?, updated_at = ?, received_at = ?, digest = ?, "
    "delivery_id = ?, body = ?, compressed = ? WHERE seq = ?"
)
_DELETE_VERSION = "DELETE FROM versions WHERE seq = ?"
_END_BATCH = "DELETE FROM batch_versions WHERE integration_id = ?"
_SET_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)

_INSERT_DELIVERY = "INSERT INTO deliveries (key, expires_at) VALUES (?, ?)"
_INSERT_HISTORY = "INSERT INTO history (integration_id, order_id, order_number, at, event) VALUES (?, ?, ?, ?, ?)"
_DELETE_LETTER = "DELETE FROM dead_letters WHERE id = ?"
_HISTORY_ENCODER = msgspec.json.Encoder()
_HISTORY_DECODER = msgspec.json.Decoder(HistoryEvent)
#: the file's expired delivery ids are deleted once per this many new ones (and by `prune`)
_PRUNE_DELIVERIES_EVERY = 1024

Op = tuple[str, Sequence[Any]]


def _prune_deliveries(now: float, keep: int) -> Op:
    """Delete the delivery ids that expired, or that are older than the newest `keep`. Rows are in
    arrival order (rowid) and all live the same TTL, so the expired ones are the first rows: the
    scan stops at the first live one."""
    return (
        "DELETE FROM deliveries WHERE rowid < max("
        "coalesce((SELECT rowid FROM deliveries WHERE expires_at > ? ORDER BY rowid LIMIT 1), "
        "(SELECT max(rowid) + 1 FROM deliveries)), (SELECT max(rowid) FROM deliveries) - ? + 1)",
        (now, keep),
    )


def _insert_values(entry: Entry, position: float) -> tuple[Any, ...]:
    """`_INSERT_VERSION`'s parameters."""
    order = entry.order
    return (
        entry.seq,
        entry.integration_id,
        entry.order_id,
        position,
        entry.platform,
        entry.updated_at,
        entry.received_at,
        entry.digest,
        entry.delivery_id,
        order.data,
        int(order.compressed),
    )


_NO_BODY = b""


def _bodiless(entry: Entry) -> Entry:
    """The mirror's copy of a pending entry: everything but the order's JSON, which stays in the
    file until the entry is taken (so the process holds metadata, not orders)."""
    return entry._replace(order=EncodedOrder(entry.order_id, _NO_BODY, entry.order.compressed))


def _entry(integration_id: int, order_id: str, row: Sequence[Any]) -> Entry:
    platform, updated_at, seq, received_at, digest, delivery_id, body, compressed = row
    return Entry(
        integration_id,
        platform,
        EncodedOrder(order_id, bytes(body), bool(compressed)),
        updated_at,
        seq,
        received_at,
        bytes(digest),
        delivery_id,
    )


def _open_error(path: Path, exc: BaseException) -> StoreOpenError:
    return StoreOpenError(f"cannot open the store {path}: {exc}")


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to `path` in autocommit mode (transactions are explicit)."""
    if read_only:
        if not path.exists():
            raise StoreOpenError(f"the store {path} does not exist")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    return connection


def _lock(path: Path) -> int:
    """An exclusive lock on `<file>.lock`, held while the store is open: one process per file.

    Two processes on one file would each trust their own mirror; the second is refused instead
    (on a local disk: `flock` is not reliable on network file systems). Returns the open fd.
    """
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreOpenError(
            f"the store {path} is in use by another order-bridge process (pid {holder}); one process per file"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to `SCHEMA_VERSION`, or refuse a file from a newer order-bridge."""
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreOpenError(
                f"the store {path} has schema version {version}, newer than this order-bridge knows "
                f"({SCHEMA_VERSION}): run the newer version, or restore a backup"
            )
        if version == 0 and connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreOpenError(f"the store {path} is a SQLite file with other tables: not an order-bridge store")
        for step in range(version, SCHEMA_VERSION):
            connection.execute("BEGIN IMMEDIATE")
            _run_script(connection, _MIGRATIONS[step])
            connection.execute(f"PRAGMA user_version = {step + 1}")
            connection.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise _open_error(path, exc) from None


def _run_script(connection: sqlite3.Connection, script: str) -> None:
    """The statements of `script`, inside the caller's transaction (`executescript` would commit)."""
    for statement in script.split(";"):
        lines = [line.split("--", 1)[0] for line in statement.splitlines()]
        text = "\n".join(lines).strip()
        if text:
            connection.execute(text)


@dataclass(slots=True)
class _Job:
    ops: list[Op]
    epoch: int
    future: asyncio.Future[list[Any]]
    #: a query run after `ops`, in the same transaction: its rows are the future's result
    read: Op | None = None
    #: the ledger's counters as the mirror had them after this change: a transaction writes
    #: its last job's, once (not one upsert per webhook)
    counters: Sequence[tuple[str, int]] = ()
    rows: list[Any] | None = None


def _execute_in_runs(connection: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Every job's statements in order, consecutive ones with the same SQL in one `executemany`
    (a group of webhooks is a run of pending upserts: one call, not one each); delivery ids and
    history steps, whose order among other statements does not matter, all at the end."""
    deliveries: list[Sequence[Any]] = []
    history: list[Sequence[Any]] = []
    run_sql = ""
    run: list[Sequence[Any]] = []
    for job in jobs:
        for sql, params in job.ops:
            if sql == _INSERT_DELIVERY:
                deliveries.append(params)
                continue
            if sql == _INSERT_HISTORY:
                history.append(params)
                continue
            if sql != run_sql and run:
                connection.executemany(run_sql, run)
                run = []
            run_sql = sql
            run.append(params)
        if job.read is not None:
            if run:
                connection.executemany(run_sql, run)
                run = []
            job.rows = connection.execute(*job.read).fetchall()
    if run:
        connection.executemany(run_sql, run)
    if deliveries:
        connection.executemany(_INSERT_DELIVERY, deliveries)
    if history:
        connection.executemany(_INSERT_HISTORY, history)


class _Writer:
    """Owns the writing connection: runs queued jobs in groups, one transaction per group.

    The statements run on the event loop's thread (each takes microseconds); only the COMMIT —
    the WAL write and the fsync, the part that waits on the disk — runs in a thread of its own.
    Jobs queued while a commit is in progress form the next group. So the loop never waits on
    the disk, and the GIL changes hands twice per commit rather than at every statement (with a
    thread running the statements too, that ping-pong cost more CPU than SQLite itself:
    docs/benchmarks.md). Loop-thread only, except `_commit_now`.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._queue: list[_Job] = []
        self._committing = False
        self._idle = asyncio.Event()
        self._idle.set()
        #: jobs of this epoch or older fail without running: an earlier one failed
        self._failed_epoch = -1
        self.commits = 0
        #: jobs submitted and not yet resolved
        self.outstanding = 0
        #: (loop, all jobs, the live ones) of each group whose COMMIT the thread is to run; None: stop
        self._commits: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Job], list[_Job]] | None]
        self._commits = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="order-bridge-sqlite-commit", daemon=True)
        self._thread.start()

    def submit(
        self, ops: list[Op], epoch: int, counters: Sequence[tuple[str, int]], read: Op | None = None
    ) -> asyncio.Future[list[Any]]:
        """Queue `ops` (and then `read`) for the next transaction; the future gives `read`'s
        rows once it committed, or fails with `StoreUnavailable`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.outstanding += 1
        self._queue.append(_Job(ops, epoch, future, read, counters))
        if not self._committing:
            self._committing = True
            self._idle.clear()
            loop.call_soon(self._start)  # what the rest of this loop iteration queues joins in
        return future

    async def stop(self) -> None:
        """Once everything queued has committed: close the connection, end the thread."""
        await self._idle.wait()
        self._commits.put(None)
        await asyncio.to_thread(self._thread.join)
        self._connection.close()

    def _start(self) -> None:
        jobs, self._queue = self._queue, []
        live = [job for job in jobs if job.epoch > self._failed_epoch]
        if not live:  # every job is behind a failed one: nothing to run
            self._finish(jobs, live, None)
            return
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            _execute_in_runs(connection, live)
            connection.executemany(_SET_COUNTER, live[-1].counters)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            self._finish(jobs, live, f"{type(exc).__name__}: {exc}")
            return
        self._commits.put((asyncio.get_running_loop(), jobs, live))

    def _run(self) -> None:
        """The commit thread: each group's COMMIT, then its answer back on the loop (one hop:
        every hop through the loop's queue waits behind the requests already there)."""
        while (group := self._commits.get()) is not None:
            loop, jobs, live = group
            error = self._commit_now()
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(self._finish, jobs, live, error)

    def _commit_now(self) -> str | None:
        """In the commit thread: COMMIT (the WAL write and fsync); the error, if it failed."""
        try:
            self._connection.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")
            return f"{type(exc).__name__}: {exc}"
        return None

    def _finish(self, jobs: list[_Job], live: list[_Job], error: str | None) -> None:
        """Answer every job of one group (`live`: the ones that ran, and committed unless
        `error`), then start the next group if jobs are waiting."""
        if error is not None:
            self._failed_epoch = max(job.epoch for job in live)
        elif live:
            self.commits += 1
        self.outstanding -= len(jobs)
        for job in jobs:
            if job.future.done():
                continue
            if job.epoch <= self._failed_epoch:
                job.future.set_exception(StoreUnavailable(error or "an earlier write failed"))
            else:
                job.future.set_result(job.rows or [])
        if self._queue:
            self._start()
        else:
            self._committing = False
            self._idle.set()


class SqliteStore:
    """`Store` in a SQLite file. Open with `SqliteStore.open(path)`; close with `await close()`."""

    durable = True

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        settings: StoreSettings,
    ) -> None:
        self.path = path
        self.settings = settings
        self._mem = MemoryStore(settings, history_to=self.record_history)
        self._front: dict[int, float] = {}
        #: history steps waiting to ride with the next commit (`record_history`)
        self._history: list[Op] = []
        self._history_queued = False
        #: delivery ids written since the file's expired ones were last deleted
        self._deliveries_since_prune = 0
        #: writes nobody waits for (`remember_delivery`)
        self._background: set[asyncio.Task[list[Any]]] = set()
        self._epoch = 0
        self._available = True
        self._sent_seq = 0
        self._lock: int | None = None
        self._changed: Callable[[Iterable[int], bool], None] | None = None
        self._reload()
        self._writer = _Writer(connection)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        synchronous: str = "full",
        settings: StoreSettings = DEFAULT_SETTINGS,
    ) -> SqliteStore:
        """Open (or create) the store at `path`: WAL mode, migrated, read back into memory.
        Raises `StoreOpenError` for a file that is corrupt, not a store, or from a newer version;
        such a file is never written to."""
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous is 'full' or 'normal'")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _lock(path)
        except OSError as exc:
            raise _open_error(path, exc) from None
        try:
            connection = connect(path)
        except (OSError, sqlite3.Error) as exc:
            os.close(lock)
            raise _open_error(path, exc) from None
        try:
            _migrate(connection, path)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            store = cls(path, connection, settings)
        except sqlite3.DatabaseError as exc:
            connection.close()
            os.close(lock)
            raise _open_error(path, exc) from None
        except BaseException:
            connection.close()
            os.close(lock)
            raise
        store._lock = lock
        return store

    # ------------------------------------------------------------ reading the file back

    def _reload(self) -> None:
        """Rebuild the mirror from what the file holds (at open, and after a failed commit)."""
        reader = connect(self.path, read_only=True)
        try:
            self._mem = mem = MemoryStore(self.settings, history_to=self.record_history)
            counters = dict(reader.execute("SELECT name, value FROM counters").fetchall())
            self._front = {}
            unsettled = 0
            for integration_id, order_id, position, *row in reader.execute(
                "SELECT integration_id, order_id, position, " + _BODILESS_COLUMNS + " FROM versions "
                "WHERE seq NOT IN (SELECT seq FROM batch_versions) ORDER BY position"
            ):
                mem._lane(integration_id).pending[order_id] = _entry(integration_id, order_id, row)
                self._front.setdefault(integration_id, position)
                unsettled += 1
            flights: dict[int, list[tuple[int, Entry, str, int]]] = {}
            for integration_id, order_id, batch_id, attempt, idx, *row in reader.execute(
                "SELECT b.integration_id, v.order_id, b.batch_id, b.attempt, b.idx, " + _ENTRY_COLUMNS + " "
                "FROM batch_versions b JOIN versions v USING (seq)"
            ):
                flights.setdefault(integration_id, []).append(
                    (idx, _entry(integration_id, order_id, row), batch_id, attempt)
                )
            for integration_id, rows in flights.items():
                rows.sort(key=lambda r: r[0])
                lane = mem._lane(integration_id)
                entries = tuple(r[1] for r in rows)
                lane.flying = Batch(rows[0][2], integration_id, entries, rows[0][3])
                lane.flying_ids = {e.order_id: e for e in entries}
                unsettled += len(entries)
            for integration_id, order_id, updated_at, seq, digest in reader.execute(
                "SELECT integration_id, order_id, updated_at, seq, digest FROM sent ORDER BY sent_seq"
            ):
                mem._lane(integration_id).sent.put(order_id, (updated_at, seq, bytes(digest)))
            for letter_id, *fields in reader.execute(
                "SELECT id, integration_id, platform, order_id, reason, detail, pointer, delivery_id, body, "
                "compressed, at, batch_id, order_number, attempts FROM dead_letters ORDER BY id"
            ):
                integration_id, platform, order_id, reason, detail, pointer, delivery_id, body, compressed = fields[:9]
                at, batch_id, order_number, attempts = fields[9:]
                order = EncodedOrder(order_id or "", bytes(body), bool(compressed)) if body is not None else None
                mem._letters[letter_id] = DeadLetter(
                    *(integration_id, platform, order_id, reason, detail, pointer, delivery_id, order, at, batch_id),
                    id=letter_id,
                    order_number=order_number,
                    attempts=attempts,
                )
            # ids only grow, even past a deleted last letter (AUTOINCREMENT keeps the highest)
            highest = reader.execute("SELECT seq FROM sqlite_sequence WHERE name = 'dead_letters'").fetchone()
            mem._letter_seq = highest[0] if highest else 0
            mem._paused = frozenset(row[0] for row in reader.execute("SELECT integration_id FROM paused_lanes"))
            deliveries = mem._deliveries
            newest = reader.execute(
                "SELECT key, expires_at FROM deliveries WHERE expires_at > ? ORDER BY rowid DESC LIMIT ?",
                (time.time(), deliveries.max_entries),
            ).fetchall()
            for key, expires_at in reversed(newest):
                deliveries.restore(key, expires_at)
            mem._seq = counters.get("seq", 0)
            mem._accepted = counters.get("accepted", 0)
            mem._sent = counters.get("sent", 0)
            mem._superseded = counters.get("superseded", 0)
            mem._dead_lettered = counters.get("dead_lettered", 0)
            mem._replayed = counters.get("replayed", 0)
            mem._discarded = counters.get("discarded", 0)
            mem._unsettled = unsettled
            self._sent_seq = counters.get("sent_seq", 0)
        finally:
            reader.close()

    # ------------------------------------------------------------ writing

    async def _commit(self, ops: list[Op], read: Op | None = None) -> list[Any]:
        if self._history:
            ops, self._history = ops + self._history, []
        epoch = self._epoch
        try:
            rows = await self._writer.submit(ops, epoch, self._counters(), read)
        except StoreUnavailable:
            if epoch == self._epoch:  # the first failure of this epoch: the mirror goes back to the file
                self._available = False
                self._epoch += 1
                self._reload()
            raise
        self._available = True
        return rows

    def _counters(self) -> tuple[tuple[str, int], ...]:
        """The counters as the mirror has them now: the ledger's, `seq` and `sent_seq`."""
        mem = self._mem
        return (
            ("accepted", mem._accepted),
            ("sent", mem._sent),
            ("superseded", mem._superseded),
            ("dead_lettered", mem._dead_lettered),
            ("replayed", mem._replayed),
            ("discarded", mem._discarded),
            ("seq", mem._seq),
            ("sent_seq", self._sent_seq),
        )

    async def connect(self) -> None:
        """Nothing to reach: the file was opened by `open`."""

    def flushing(self) -> bool:
        return True

    def watch(self, changed: Callable[[Iterable[int], bool], None]) -> None:
        """One process writes the file; `changed` hears of the lanes that other workers of
        `serve --workers` filled through it (`service.store.relay`)."""
        self._changed = changed

    def changed_elsewhere(self, integration_ids: Iterable[int]) -> None:
        """Orders (or a pause) came into these lanes by the relay: the buffer's timers restart."""
        if self._changed is not None:
            self._changed(integration_ids, False)

    async def add(self, arrival: Arrival) -> AddResult:
        lane = self._mem._lane(arrival.integration_id)
        order_id = arrival.order.order_id
        replaced = lane.pending.get(order_id)
        # a replayed dead letter leaves the file in the same commit as the order's arrival
        letter = arrival.replay_of
        resolved: list[Op] = (
            [(_DELETE_LETTER, (letter,))] if letter is not None and letter in self._mem._letters else []
        )
        result = await self._mem.add(arrival)
        delivery = self._delivery_ops(arrival.integration_id, arrival.delivery_id, arrival.received_at)
        if result is AddResult.STALE:
            if resolved:
                await self._commit(resolved + delivery)
            elif delivery:
                self._write_later(delivery)
            return result
        entry = lane.pending[order_id]
        order = entry.order
        if replaced is None:  # buffered: at the end of the line
            ops: list[Op] = [(_INSERT_VERSION, _insert_values(entry, entry.seq))]
        else:  # coalesced: the new version takes the old one's row and place in line
            values = (
                *(entry.seq, entry.platform, entry.updated_at, entry.received_at, entry.digest),
                *(entry.delivery_id, order.data, int(order.compressed), replaced.seq),
            )
            ops = [(_REPLACE_VERSION, values)]
        lane.pending[order_id] = _bodiless(entry)
        await self._commit(ops + delivery + resolved)
        return result

    def _delivery_ops(self, integration_id: int, delivery_id: str | None, now: float) -> list[Op]:
        """The delivery id into the file (the mirror has it already), and now and then the
        expired ones and those past `dedupe_max_entries` out of it (the oldest rows first)."""
        if delivery_id is None:
            return []
        deliveries = self._mem._deliveries
        ops: list[Op] = [(_INSERT_DELIVERY, (SeenDeliveries.key(integration_id, delivery_id), now + deliveries.ttl))]
        self._deliveries_since_prune += 1
        if self._deliveries_since_prune >= _PRUNE_DELIVERIES_EVERY:
            self._deliveries_since_prune = 0
            ops.append(_prune_deliveries(now, deliveries.max_entries))
        return ops

    def _write_later(self, ops: list[Op]) -> None:
        """Commit `ops` with the next group, without anyone waiting for it."""
        task = asyncio.get_running_loop().create_task(self._commit(ops))
        self._background.add(task)
        task.add_done_callback(self._written_later)

    def _written_later(self, task: asyncio.Task[list[Any]]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a failure was handled in `_commit` (mirror read back); nobody waits

    def seen_delivery(self, integration_id: int, delivery_id: str, now: float) -> bool:
        return self._mem.seen_delivery(integration_id, delivery_id, now)

    def remember_delivery(self, integration_id: int, delivery_id: str, now: float) -> None:
        self._mem.remember_delivery(integration_id, delivery_id, now)
        self._write_later(self._delivery_ops(integration_id, delivery_id, now))

    async def prune(self, now: float) -> int:
        dropped = self._mem._prune_letters(now)
        ops = [_prune_deliveries(now, self._mem._deliveries.max_entries)]
        ops += [(_DELETE_LETTER, (letter_id,)) for letter_id in dropped]
        # history rows are in arrival order: the expired ones are the first (the scan stops at
        # the first one kept)
        ops.append(
            (
                "DELETE FROM history WHERE id < coalesce((SELECT id FROM history WHERE at >= ? ORDER BY id LIMIT 1), "
                "(SELECT max(id) + 1 FROM history))",
                (now - self.settings.history_retention,),
            )
        )
        self._deliveries_since_prune = 0
        await self._commit(ops)
        return len(dropped)

    async def resolve_dead_letter(self, letter_id: int, how: Resolution) -> DeadLetter | None:
        letter = await self._mem.resolve_dead_letter(letter_id, how)
        if letter is not None:
            await self._commit([(_DELETE_LETTER, (letter_id,))])
        return letter

    async def dead_letter_failed_again(self, letter_id: int, detail: str, at: float) -> DeadLetter | None:
        letter = await self._mem.dead_letter_failed_again(letter_id, detail, at)
        if letter is not None:
            await self._commit(
                [
                    (
                        "UPDATE dead_letters SET detail = ?, attempts = ? WHERE id = ?",
                        (detail, letter.attempts, letter_id),
                    )
                ]
            )
        return letter

    async def dead_letter_webhook(self, letter_id: int) -> bytes | None:
        def read() -> bytes | None:
            reader = connect(self.path, read_only=True)
            try:
                row = reader.execute("SELECT webhook FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
            finally:
                reader.close()
            return zlib.decompress(row[0]) if row is not None and row[0] is not None else None

        return await asyncio.to_thread(read)

    async def set_paused(self, integration_id: int, paused: bool) -> None:
        await self._mem.set_paused(integration_id, paused)
        if paused:
            op: Op = ("INSERT OR IGNORE INTO paused_lanes (integration_id) VALUES (?)", (integration_id,))
        else:
            op = ("DELETE FROM paused_lanes WHERE integration_id = ?", (integration_id,))
        await self._commit([op])

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Steps join the next commit; if none is on its way, one is started for them."""
        self._history += [
            (_INSERT_HISTORY, (e.integration_id, e.order_id, e.order_number, e.at, _HISTORY_ENCODER.encode(e)))
            for e in events
        ]
        if not self._history_queued:
            self._history_queued = True
            asyncio.get_running_loop().call_soon(self._write_history)

    def _write_history(self) -> None:
        self._history_queued = False
        if self._history:  # no commit took them meanwhile
            self._write_later([])

    async def history(
        self, integration_id: int, *, order_id: str | None = None, order_number: str | None = None
    ) -> list[HistoryEvent]:
        def read() -> list[HistoryEvent]:
            reader = connect(self.path, read_only=True)
            try:
                ids = {order_id} if order_id is not None else set()
                if order_number is not None:  # each lookup through its own index
                    ids.update(
                        row[0]
                        for row in reader.execute(
                            "SELECT DISTINCT order_id FROM history WHERE integration_id = ? AND order_number = ?",
                            (integration_id, order_number),
                        )
                    )
                rows = [
                    row
                    for one in sorted(ids)
                    for row in reader.execute(
                        "SELECT id, event FROM history WHERE integration_id = ? AND order_id = ?", (integration_id, one)
                    )
                ]
            finally:
                reader.close()
            return [_HISTORY_DECODER.decode(event) for _, event in sorted(rows)]

        return await asyncio.to_thread(read)

    async def take(self, integration_id: int, limit: int, *, batch_id: str, attempt: int) -> Batch | None:
        lane = self._mem._lanes.get(integration_id)
        if lane is not None and lane.flying is not None:
            return lane.flying  # already in the file as in flight
        batch = await self._mem.take(integration_id, limit, batch_id=batch_id, attempt=attempt)
        if batch is None:
            return None
        # The mirror holds no order bodies: the batch's rows are listed in batch_versions, and
        # their bodies come back from the same transaction, after every write queued before it.
        ops: list[Op] = [
            (
                "INSERT INTO batch_versions (seq, integration_id, batch_id, attempt, idx) VALUES (?, ?, ?, ?, ?)",
                (entry.seq, integration_id, batch.id, batch.attempt, idx),
            )
            for idx, entry in enumerate(batch.entries)
        ]
        read: Op = (
            "SELECT v.seq, v.body, v.compressed FROM batch_versions b JOIN versions v USING (seq) "
            "WHERE b.integration_id = ?",
            (integration_id,),
        )
        bodies = {seq: (bytes(body), bool(compressed)) for seq, body, compressed in await self._commit(ops, read)}
        entries = tuple(
            entry._replace(order=EncodedOrder(entry.order_id, *bodies[entry.seq])) for entry in batch.entries
        )
        full = Batch(batch.id, integration_id, entries, batch.attempt)
        lane = self._mem._lanes[integration_id]
        lane.flying, lane.flying_ids = full, {entry.order_id: entry for entry in entries}
        return full

    async def settle(self, batch: Batch, settlement: Settlement) -> Settled:
        first_letter = self._mem._letter_seq + 1
        settled = await self._mem.settle(batch, settlement)
        integration_id = batch.integration_id
        ops = self._front_ops(integration_id, settlement.retry)
        ops += [(_DELETE_VERSION, (entry.seq,)) for entry in (*settlement.sent, *settlement.dead_entries)]
        ops.append((_END_BATCH, (integration_id,)))
        for entry in settlement.sent:
            self._sent_seq += 1
            ops.append(
                (
                    "INSERT INTO sent (integration_id, order_id, updated_at, seq, digest, sent_seq) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (integration_id, order_id) DO UPDATE SET "
                    "updated_at = excluded.updated_at, seq = excluded.seq, digest = excluded.digest, "
                    "sent_seq = excluded.sent_seq",
                    (integration_id, entry.order_id, entry.updated_at, entry.seq, entry.digest, self._sent_seq),
                )
            )
        if settlement.sent:
            # The file keeps what the mirror keeps at most: the newest `remember_sent` of the lane.
            ops.append(
                (
                    "DELETE FROM sent WHERE integration_id = ? AND sent_seq <= ?",
                    (integration_id, self._sent_seq - self.settings.remember_sent),
                )
            )
        ops += self._letter_ops(settlement.dead, first_letter, settled.evicted)
        await self._commit(ops)
        return settled

    def _front_ops(self, integration_id: int, retried: Iterable[Entry]) -> list[Op]:
        """The retried versions back in front of the line (run these before the batch is ended);
        where a newer version of the order was pending meanwhile, that one takes the place
        instead, with the older one's receipt time, and the older row goes."""
        pending = self._mem._lanes[integration_id].pending
        retried = list(retried)
        front = self._front.get(integration_id, 0.0)
        ops: list[Op] = []
        for place, old in enumerate(retried):
            entry = pending[old.order_id]
            position = front - len(retried) + place
            if entry.seq == old.seq:  # the retried version itself
                ops.append(("UPDATE versions SET position = ? WHERE seq = ?", (position, old.seq)))
            else:  # superseded by the newer version already in the file
                ops.append((_DELETE_VERSION, (old.seq,)))
                ops.append(
                    (
                        "UPDATE versions SET position = ?, received_at = ? WHERE seq = ?",
                        (position, entry.received_at, entry.seq),
                    )
                )
            pending[old.order_id] = _bodiless(entry)
        if retried:
            self._front[integration_id] = front - len(retried)
        return ops

    def _letter_ops(self, letters: Sequence[DeadLetter], first_id: int, evicted: Sequence[DeadLetter]) -> list[Op]:
        """Insert `letters` under the ids the mirror gave them (`first_id` on), then delete the
        evicted ones (which may include some of these, when there are more than fit)."""
        ops: list[Op] = []
        for letter_id, letter in enumerate(letters, first_id):
            order = letter.order
            ops.append(
                (
                    "INSERT INTO dead_letters (id, integration_id, platform, order_id, reason, detail, pointer, "
                    "delivery_id, body, compressed, at, batch_id, webhook, order_number, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        letter_id,
                        letter.integration_id,
                        letter.platform,
                        letter.order_id,
                        letter.reason,
                        letter.detail,
                        letter.pointer,
                        letter.delivery_id,
                        order.data if order is not None else None,
                        int(order.compressed) if order is not None else 0,
                        letter.at,
                        letter.batch_id,
                        zlib.compress(letter.webhook) if letter.webhook is not None else None,
                        letter.order_number,
                        letter.attempts,
                    ),
                )
            )
        ops += [(_DELETE_LETTER, (letter.id,)) for letter in evicted]
        return ops

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> Settled:
        # The mirror keeps no webhook bodies (the file does: a later replay reads them there).
        first_id = self._mem._letter_seq + 1
        kept = await self._mem.add_dead_letters([replace(letter, webhook=None) for letter in letters])
        await self._commit(self._letter_ops(letters, first_id, kept.evicted))
        return kept

    async def recover(self) -> tuple[Batch, ...]:
        recovered = []
        for integration_id, lane in list(self._mem._lanes.items()):
            batch = lane.flying
            if batch is None:
                continue
            await self._mem.settle(batch, Settlement((), (), (), batch.entries))
            ops = self._front_ops(integration_id, batch.entries)
            ops.append((_END_BATCH, (integration_id,)))
            await self._commit(ops)
            recovered.append(batch)
        return tuple(recovered)

    async def close(self) -> None:
        """Stop the writer once everything queued has committed, then let go of the file."""
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._writer.stop()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # ------------------------------------------------------------ reads: the mirror's

    def available(self) -> bool:
        return self._available

    def lanes(self) -> tuple[int, ...]:
        return self._mem.lanes()

    def pending(self, integration_id: int) -> int:
        return self._mem.pending(integration_id)

    def in_flight(self, integration_id: int) -> int:
        return self._mem.in_flight(integration_id)

    def unsettled(self) -> int:
        return self._mem.unsettled()

    def oldest_received(self, integration_id: int | None = None) -> float | None:
        return self._mem.oldest_received(integration_id)

    def ledger(self) -> Ledger:
        return self._mem.ledger()

    async def list_pending(self, integration_id: int, limit: int = 100) -> list[Entry]:
        return await self._mem.list_pending(integration_id, limit)

    async def batch_in_flight(self, integration_id: int) -> Batch | None:
        return await self._mem.batch_in_flight(integration_id)

    async def dead_letters(
        self,
        integration_id: int | None = None,
        limit: int | None = None,
        *,
        reason: str | None = None,
        since: float | None = None,
        after: int = 0,
    ) -> list[DeadLetter]:
        return await self._mem.dead_letters(integration_id, limit, reason=reason, since=since, after=after)

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        return await self._mem.dead_letter(letter_id)

    def dead_letter_count(self) -> int:
        return self._mem.dead_letter_count()

    def paused(self) -> frozenset[int]:
        return self._mem.paused()

    def writing(self) -> bool:
        """True while a write is queued or committing."""
        return self._writer.outstanding > 0

    @property
    def commits(self) -> int:
        """Transactions committed so far (each holds every change queued while the last one ran)."""
        return self._writer.commits


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """What a store file holds, read without changing it (`order-bridge check-config`)."""

    schema_version: int
    pending: int
    in_flight: int
    batches_in_flight: int
    dead_letters: int
    sent_remembered: int
    lanes: tuple[int, ...]


def summarize(path: Path) -> StoreSummary:
    """Open `path` read-only and count what it holds; `StoreOpenError` if it cannot be read."""
    try:
        reader = connect(path, read_only=True)
    except sqlite3.Error as exc:
        raise _open_error(path, exc) from None
    try:
        version = reader.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreOpenError(f"the store {path} has schema version {version}, newer than this order-bridge knows")
        if version == 0:
            return StoreSummary(0, 0, 0, 0, 0, 0, ())

        def count(sql: str) -> int:
            return int(reader.execute(sql).fetchone()[0])

        lanes = tuple(row[0] for row in reader.execute("SELECT DISTINCT integration_id FROM versions ORDER BY 1"))
        return StoreSummary(
            version,
            count("SELECT count(*) FROM versions WHERE seq NOT IN (SELECT seq FROM batch_versions)"),
            count("SELECT count(*) FROM batch_versions"),
            count("SELECT count(DISTINCT batch_id) FROM batch_versions"),
            count("SELECT count(*) FROM dead_letters"),
            count("SELECT count(*) FROM sent"),
            lanes,
        )
    except sqlite3.DatabaseError as exc:
        raise _open_error(path, exc) from None
    finally:
        reader.close()

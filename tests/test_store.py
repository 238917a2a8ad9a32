"""The store contract: what every `Store` must do, run on the memory store and on SQLite; then
what only the SQLite store promises — the file outlives the process, migrations, failures."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
import zlib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.sendcloud import encode_order
from service.store import (
    AddResult,
    Arrival,
    Batch,
    DeadLetter,
    HistoryEvent,
    Settlement,
    StoreOpenError,
    StoreSettings,
    StoreUnavailable,
    digest,
)
from service.store.memory import MemoryStore
from service.store.sqlite import SCHEMA_VERSION, SqliteStore, summarize
from tests.stores import StoreFactory
from tests.versions import T0, arrival, order


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- the contract, on both stores


async def take(store: MemoryStore, limit: int = 100, batch_id: str = "b1") -> Batch:
    batch = await store.take(7, limit, batch_id=batch_id, attempt=1)
    assert batch is not None
    return batch


def sent(batch: Batch) -> Settlement:
    return Settlement(batch.entries, (), (), ())


def retried(batch: Batch) -> Settlement:
    return Settlement((), (), (), batch.entries)


@pytest.mark.anyio
async def test_store_keeps_one_version_per_order_newest_wins(new_store: StoreFactory) -> None:
    """A newer version replaces the pending one; an older one, or a repeat of the same, is stale."""
    store = await new_store()
    assert await store.add(arrival("a", 10)) is AddResult.BUFFERED
    assert await store.add(arrival("a", 20)) is AddResult.COALESCED
    assert await store.add(arrival("a", 15)) is AddResult.STALE
    assert await store.add(arrival("a", 20)) is AddResult.STALE  # same time, same content: a repeat
    # same time, other content: newer by arrival
    assert await store.add(arrival("a", 20, number="#1001-B")) is AddResult.COALESCED
    assert store.pending(7) == 1
    (entry,) = (await take(store)).entries
    assert entry.updated_at == (T0 + timedelta(minutes=20)).timestamp()
    assert entry.seq >= 5  # the store numbers every arrival, stale ones included (a sequence may skip)


@pytest.mark.anyio
async def test_store_identifies_versions_by_value_with_a_stable_digest(new_store: StoreFactory) -> None:
    """A version's key is (integration, order id, (update time, arrival)); its digest is BLAKE2b of
    the JSON — the same value in any process, unlike `hash()`."""
    store = await new_store()
    await store.add(arrival("a", 10))
    (entry,) = await store.list_pending(7)
    assert entry.key == (7, "a", ((T0 + timedelta(minutes=10)).timestamp(), 1))
    assert entry.digest == digest(encode_order(order("a", 10)).json) and len(entry.digest) == 16
    json = encode_order(order("a", 10)).json
    assert entry.digest.hex() == hashlib.blake2b(json, digest_size=16).hexdigest()


@pytest.mark.anyio
async def test_store_drops_versions_older_than_in_flight_or_sent(new_store: StoreFactory) -> None:
    """Once a version is in flight or sent, older versions of that order are stale."""
    store = await new_store()
    await store.add(arrival("a", 20))
    flying = await take(store)
    assert await store.add(arrival("a", 10)) is AddResult.STALE
    assert await store.add(arrival("a", 30)) is AddResult.BUFFERED  # goes into the next batch
    await store.settle(flying, sent(flying))
    assert await store.add(arrival("a", 25)) is AddResult.STALE  # newer than sent, older than pending
    (entry,) = (await take(store, batch_id="b2")).entries
    assert entry.updated_at == (T0 + timedelta(minutes=30)).timestamp()


@pytest.mark.anyio
async def test_store_retry_prefers_a_newer_pending_version(new_store: StoreFactory) -> None:
    """A retried batch does not resurrect a version superseded while it was in flight; the newer
    one goes first in line and has waited since the older one arrived."""
    store = await new_store()
    await store.add(arrival("a", 10, received=1.0))
    await store.add(arrival("b", 10, received=2.0))
    batch = await take(store)
    await store.add(arrival("a", 20, received=5.0))
    settled = await store.settle(batch, retried(batch))
    assert settled.superseded == 1
    taken = (await take(store, batch_id="b2")).entries
    assert [(e.order_id, e.updated_at) for e in taken] == [
        ("a", (T0 + timedelta(minutes=20)).timestamp()),
        ("b", (T0 + timedelta(minutes=10)).timestamp()),
    ]
    assert taken[0].received_at == 1.0
    assert store.oldest_received(7) == 1.0


@pytest.mark.anyio
async def test_store_oldest_received_counts_pending_and_in_flight(new_store: StoreFactory) -> None:
    """The oldest unsettled receipt time covers orders in flight too; counts are per lane and in all."""
    store = await new_store()
    await store.add(arrival("a", received=3.0))
    await store.add(arrival("b", received=4.0))
    await take(store, limit=1)
    assert store.oldest_received(7) == 3.0 and store.oldest_received() == 3.0
    assert (store.pending(7), store.in_flight(7), store.unsettled()) == (1, 1, 2)
    assert store.lanes() == (7,) and store.pending(8) == 0


@pytest.mark.anyio
async def test_store_holds_one_batch_per_lane_and_settles_only_it(new_store: StoreFactory) -> None:
    """A take while a batch is in flight gives that batch again (its answer was never applied:
    it is resent first); settling a batch that is not in flight is a bug, refused."""
    store = await new_store()
    await store.add(arrival("a"))
    await store.add(arrival("b"))
    batch = await take(store, limit=1)
    assert await store.batch_in_flight(7) == batch
    assert await take(store, batch_id="b2") == batch
    await store.settle(batch, sent(batch))
    with pytest.raises(RuntimeError):
        await store.settle(batch, sent(batch))
    assert await store.batch_in_flight(7) is None and await store.take(8, 10, batch_id="x", attempt=1) is None


@pytest.mark.anyio
async def test_store_drops_a_repeat_of_what_was_sent(new_store: StoreFactory) -> None:
    """The same content at the same update time as a sent version is a repeat; other content is not."""
    store = await new_store()
    await store.add(arrival("a", 10))
    batch = await take(store)
    await store.settle(batch, sent(batch))
    assert await store.add(arrival("a", 10)) is AddResult.STALE
    assert await store.add(arrival("a", 10, number="#1001-B")) is AddResult.BUFFERED


@pytest.mark.anyio
async def test_store_forgets_sent_versions_beyond_its_bound(new_store: StoreFactory) -> None:
    """Memory of sent versions is bounded; the oldest are forgotten first (PostgreSQL's at the
    periodic prune; the others' as they settle). Pending and in-flight orders are never."""
    store = await new_store(remember_sent=2)
    for name in "abc":
        await store.add(arrival(name, 10))
    batch = await take(store)
    await store.settle(batch, sent(batch))
    await store.add(arrival("p", 10))
    await store.add(arrival("f", 10))
    await take(store, limit=1, batch_id="b2")
    await store.prune(0.0)
    assert store.pending(7) == 1 and store.in_flight(7) == 1
    assert await store.add(arrival("p", 10)) is AddResult.STALE and await store.add(arrival("f", 10)) is AddResult.STALE
    assert await store.add(arrival("a", 5)) is AddResult.BUFFERED  # "a" was forgotten
    assert await store.add(arrival("c", 5)) is AddResult.STALE


@pytest.mark.anyio
async def test_store_recover_puts_the_batch_in_flight_back_in_front(new_store: StoreFactory) -> None:
    """What was in flight when the buffer stopped goes back to pending, first in line."""
    store = await new_store()
    for name in "abc":
        await store.add(arrival(name))
    batch = await take(store, limit=2)
    assert await store.recover() == (batch,)
    assert [e.order_id for e in await store.list_pending(7)] == ["a", "b", "c"]
    assert (store.in_flight(7), store.unsettled()) == (0, 3) and await store.recover() == ()


@pytest.mark.anyio
async def test_store_keeps_dead_letters_up_to_capacity_and_reports_evictions(new_store: StoreFactory) -> None:
    store = await new_store(dead_letter_capacity=2)
    letters = [DeadLetter(7, "shopify", str(n), "unsupported_currency", "x") for n in range(3)]
    first = await store.add_dead_letters(letters[:2])
    assert first.evicted == () and [x.id for x in first.kept] == [1, 2]
    assert (await store.add_dead_letters(letters[2:])).evicted == (replace(letters[0], id=1),)
    assert [d.order_id for d in await store.dead_letters()] == ["1", "2"] and store.dead_letter_count() == 2
    assert [d.id for d in await store.dead_letters()] == [2, 3]  # ids only grow
    assert await store.dead_letters(integration_id=8) == []


@pytest.mark.anyio
async def test_store_lists_dead_letters_by_filter_and_page(new_store: StoreFactory) -> None:
    store = await new_store()
    await store.add_dead_letters(
        [
            DeadLetter(7, "shopify", "a", "unsupported_currency", "JPY", at=100.0),
            DeadLetter(8, "woocommerce", "b", "sendcloud_rejected", "x", at=200.0),
            DeadLetter(7, "shopify", "c", "sendcloud_rejected", "y", at=300.0),
            DeadLetter(7, "shopify", "d", "sendcloud_rejected", "z", at=400.0),
        ]
    )

    async def ids(**filters: Any) -> list[str | None]:
        return [d.order_id for d in await store.dead_letters(**filters)]

    assert await ids(integration_id=7) == ["a", "c", "d"]
    assert await ids(reason="sendcloud_rejected") == ["b", "c", "d"]
    assert await ids(since=250.0) == ["c", "d"]
    first = await store.dead_letters(integration_id=7, reason="sendcloud_rejected", limit=1)
    assert [d.order_id for d in first] == ["c"]
    assert await ids(integration_id=7, reason="sendcloud_rejected", limit=1, after=first[-1].id) == ["d"]
    assert await ids(after=4) == [] and await store.dead_letter(3) == (await store.dead_letters())[2]
    assert await store.dead_letter(99) is None


@pytest.mark.anyio
async def test_store_resolves_dead_letters_and_the_ledger_says_how(new_store: StoreFactory) -> None:
    """A replayed or discarded letter leaves the store and is counted; one whose replay failed
    again stays with one attempt more; a letter's webhook body is there for replay only."""
    store = await new_store()
    await store.add_dead_letters(
        [
            DeadLetter(7, "shopify", "a", "unsupported_currency", "JPY", webhook=b'{"id": 1}'),
            DeadLetter(7, "shopify", "b", "unsupported_currency", "JPY", webhook=b'{"id": 2}'),
            DeadLetter(7, "shopify", "c", "unsupported_currency", "JPY"),
        ]
    )
    assert await store.dead_letter_webhook(1) == b'{"id": 1}' and await store.dead_letter_webhook(3) is None
    resolved = await store.resolve_dead_letter(1, "replayed")
    assert resolved is not None and resolved.order_id == "a"
    assert await store.resolve_dead_letter(1, "replayed") is None  # not twice
    assert await store.resolve_dead_letter(3, "discarded") is not None
    again = await store.dead_letter_failed_again(2, "still JPY", 500.0)
    assert again is not None and (again.attempts, again.detail) == (1, "still JPY")
    assert await store.dead_letter_failed_again(3, "gone", 500.0) is None
    assert [(d.id, d.attempts) for d in await store.dead_letters()] == [(2, 1)]
    ledger = store.ledger()
    assert (ledger.replayed, ledger.discarded) == (1, 1) and ledger.balanced


@pytest.mark.anyio
async def test_store_keeps_which_lanes_are_paused(new_store: StoreFactory) -> None:
    store = await new_store()
    await store.set_paused(7, True)
    await store.set_paused(8, True)
    await store.set_paused(8, False)
    await store.set_paused(9, False)
    assert store.paused() == frozenset({7})


@pytest.mark.anyio
async def test_store_keeps_each_orders_history_for_its_retention(new_store: StoreFactory) -> None:
    """Every version's arrival is a step (buffered, coalesced, stale) with its delivery id and
    topic; other steps are recorded by the buffer and the admin API; a history is found by order
    id or number and goes after `history_retention`."""
    store = await new_store(history_retention=1000.0)
    first = arrival("a", 1, received=100.0)._replace(delivery_id="d1", topic="orders/create", order_number="#1001")
    await store.add(first)
    await store.add(first._replace(delivery_id="d2", received_at=101.0))  # a repeat: stale
    await store.add(arrival("a", 2, received=102.0)._replace(order_number="#1001"))
    store.record_history([HistoryEvent(7, "a", 103.0, "batched", batch_id="b1", attempt=1)])
    await store.add(arrival("z", 1, received=2000.0))  # another order, later
    steps = await store.history(7, order_id="a")
    assert [(s.event, s.outcome, s.delivery_id) for s in steps] == [
        ("received", "buffered", "d1"),
        ("received", "stale", "d2"),
        ("received", "coalesced", None),
        ("batched", None, None),
    ]
    assert steps[0].topic == "orders/create" and steps[0].order_number == "#1001"
    assert await store.history(7, order_number="#1001") == steps
    assert await store.history(8, order_id="a") == [] and await store.history(7, order_number="#9") == []
    await store.prune(1102.5)  # the first three steps are past 1000 s
    assert [s.at for s in await store.history(7, order_id="a")] == [103.0]
    assert await store.history(7, order_id="z") != []


@pytest.mark.anyio
async def test_store_remembers_delivery_ids_until_their_ttl(new_store: StoreFactory) -> None:
    """`add` takes the arrival's delivery id whatever the outcome (a stale one too);
    `remember_delivery` takes one that never reached `add`; each is seen for `dedupe_ttl`."""
    store = await new_store(dedupe_ttl=60.0)
    await store.add(arrival("a", 1, received=1000.0)._replace(delivery_id="d-1"))
    await store.add(arrival("a", 0, received=1000.0)._replace(delivery_id="d-2"))  # stale, still taken
    store.remember_delivery(7, "d-3", 1000.0)
    for delivery in ("d-1", "d-2", "d-3"):
        assert store.seen_delivery(7, delivery, 1059.0), delivery
        assert not store.seen_delivery(7, delivery, 1060.5), delivery
    assert not store.seen_delivery(8, "d-1", 1001.0)  # per integration
    assert not store.seen_delivery(7, "d-4", 1001.0)


@pytest.mark.anyio
async def test_store_prune_drops_dead_letters_past_their_retention(new_store: StoreFactory) -> None:
    """Personal data is not kept longer than promised: a dead letter older than the retention
    goes (oldest first), a younger one stays."""
    store = await new_store(dead_letter_retention=100.0)
    old = DeadLetter(7, "shopify", "a", "unsupported_currency", "JPY", at=1000.0, webhook=b'{"id": 1}')
    young = DeadLetter(7, "shopify", "b", "unsupported_currency", "JPY", at=1050.0, webhook=b'{"id": 2}')
    await store.add_dead_letters([old, young])
    assert await store.prune(1099.0) == 0
    assert await store.prune(1101.0) == 1
    assert [x.order_id for x in await store.dead_letters()] == ["b"] and store.dead_letter_count() == 1


# ---------------------------------------------------------------- SQLite only


async def _filled(path: Path) -> SqliteStore:
    """A store at `path` with: a, b pending; c sent; d in flight (batch b1, attempt 2); one dead letter."""
    store = SqliteStore.open(path)
    for name in "cd":
        await store.add(arrival(name, 1, received=100.0))
    sent_batch = await store.take(7, 1, batch_id="b0", attempt=1)
    assert sent_batch is not None
    await store.settle(sent_batch, Settlement(sent_batch.entries, (), (), ()))
    await store.take(7, 1, batch_id="b1", attempt=2)
    for name in "ab":
        await store.add(arrival(name, 1, received=200.0))
    await store.add(arrival("a", 2, received=300.0))  # coalesced
    await store.add_dead_letters([DeadLetter(7, "shopify", None, "unsupported_currency", "order currency JPY …")])
    return store


@pytest.mark.anyio
async def test_sqlite_file_holds_everything_after_the_process_is_gone(tmp_path: Path) -> None:
    """Reopening the file (as a restarted process does) gives back every pending version in its place
    in line, the batch in flight with its id and attempt, the sent versions that make repeats stale,
    the dead letters and the ledger."""
    path = tmp_path / "state.db"
    first = await _filled(path)
    before = (first.ledger(), await first.list_pending(7), await first.batch_in_flight(7), await first.dead_letters())
    await first.close()

    again = SqliteStore.open(path)
    try:
        assert (
            again.ledger(),
            await again.list_pending(7),
            await again.batch_in_flight(7),
            await again.dead_letters(),
        ) == before
        assert [e.order_id for e in await again.list_pending(7)] == ["a", "b"]
        in_flight = await again.batch_in_flight(7)
        assert in_flight is not None and (in_flight.id, in_flight.attempt) == ("b1", 2)
        assert again.ledger().balanced and again.unsettled() == 3
        assert await again.add(arrival("c", 1)) is AddResult.STALE  # a repeat of the one sent
        assert await again.add(arrival("d", 1)) is AddResult.STALE  # a repeat of the one in flight
        fresh = await again.add(arrival("e", 1))
        assert fresh is AddResult.BUFFERED and (await again.list_pending(7))[-1].seq > max(e.seq for e in before[1])
    finally:
        await again.close()


@pytest.mark.anyio
async def test_sqlite_recover_resends_the_batch_in_flight_first(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await (await _filled(path)).close()
    store = SqliteStore.open(path)
    (recovered,) = await store.recover()
    assert recovered.id == "b1"
    assert [e.order_id for e in await store.list_pending(7)] == ["d", "a", "b"]
    await store.close()
    store = SqliteStore.open(path)  # and that, too, is in the file
    assert [e.order_id for e in await store.list_pending(7)] == ["d", "a", "b"] and await store.batch_in_flight(
        7
    ) is None
    assert store.ledger().balanced
    await store.close()


@pytest.mark.anyio
async def test_sqlite_commits_concurrent_writes_in_groups(tmp_path: Path) -> None:
    """Writes that arrive while a commit runs share the next one: 200 concurrent adds, far fewer commits,
    each add answered only once its commit returned (it is in the file then)."""
    store = SqliteStore.open(tmp_path / "state.db", synchronous="full")
    results = await asyncio.gather(*(store.add(arrival(f"o{n}")) for n in range(200)))
    assert set(results) == {AddResult.BUFFERED}
    assert 1 <= store.commits < 100, store.commits
    assert summarize(tmp_path / "state.db").pending == 200
    await store.close()


@pytest.mark.anyio
async def test_sqlite_failed_commit_answers_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    """A full disk (SQLite's own SQLITE_FULL, by capping the file's pages): the add raises
    `StoreUnavailable`, the mirror goes back to what the file holds, `available()` says so, and once
    there is room the same order is taken."""
    path = tmp_path / "state.db"
    store = SqliteStore.open(path)
    await store.add(arrival("a", 1))
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    cap = f"PRAGMA max_page_count = {pages}"
    store._writer._connection.execute(cap)  # the writer's own connection: the disk is "full"
    big = [Arrival(7, "shopify", encode_order(order(f"x{n}")), 1.0, 1.0) for n in range(50)]
    outcomes = await asyncio.gather(*(store.add(a) for a in big), return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert "full" in str(outcomes[0]).lower()
    assert not store.available()
    assert [e.order_id for e in await store.list_pending(7)] == ["a"] and store.ledger().accepted == 1
    store._writer._connection.execute("PRAGMA max_page_count = 1073741823")
    assert await store.add(big[0]) is AddResult.BUFFERED
    assert store.available() and store.ledger().balanced
    await store.close()
    assert summarize(path).pending == 2


@pytest.mark.anyio
async def test_sqlite_refuses_a_newer_schema_a_corrupt_file_and_a_foreign_database(tmp_path: Path) -> None:
    """Each stops with a message naming the file, and the file is left exactly as it was."""
    newer = tmp_path / "newer.db"
    await (SqliteStore.open(newer)).close()
    with sqlite3.connect(newer) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database, " * 200)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE customers (name TEXT)")
    for path, words in ((newer, "newer"), (corrupt, "not a database"), (foreign, "not an order-bridge store")):
        content = path.read_bytes()
        with pytest.raises(StoreOpenError, match=words) as caught:
            SqliteStore.open(path)
        assert str(path) in str(caught.value)
        assert path.read_bytes() == content


@pytest.mark.anyio
async def test_sqlite_migrates_an_empty_file_and_records_its_version(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.db"  # folders are created
    await (SqliteStore.open(path)).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.anyio
async def test_sqlite_upgrades_a_schema_1_file_keeping_what_it_holds(tmp_path: Path) -> None:
    """A file written by the first SQLite schema (pending and in-flight rows, a dead letter,
    counters) opens with today's: migrated in place, version recorded, nothing lost."""
    from service.store import sqlite as sqlite_store

    path = tmp_path / "state.db"
    body = encode_order(order("a")).data
    raw = sqlite3.connect(path, isolation_level=None)
    sqlite_store._run_script(raw, sqlite_store._MIGRATIONS[0])
    raw.execute("PRAGMA user_version = 1")
    entry = ("shopify", 1.0, 2, 100.0, b"d" * 16, "delivery-a", body, 0)
    raw.execute("INSERT INTO pending VALUES (7, 'a', 2, ?, ?, ?, ?, ?, ?, ?, ?)", entry)
    raw.execute(
        "INSERT INTO in_flight VALUES (7, 'b', 'batch-1', 3, 0, ?, ?, ?, ?, ?, ?, ?, ?)", (*entry[:2], 1, *entry[3:])
    )
    raw.execute(
        "INSERT INTO dead_letters (integration_id, platform, order_id, reason, detail, at) "
        "VALUES (7, 'shopify', 'c', 'unsupported_currency', 'JPY', 50.0)"
    )
    raw.executemany("INSERT INTO counters VALUES (?, ?)", [("accepted", 3), ("dead_lettered", 1), ("seq", 2)])
    raw.close()

    store = SqliteStore.open(path)
    try:
        assert [e.order_id for e in await store.list_pending(7)] == ["a"]
        flying = await store.batch_in_flight(7)
        assert flying is not None and (flying.id, flying.attempt, flying.entries[0].order_id) == ("batch-1", 3, "b")
        assert flying.entries[0].order.data == body
        assert [x.order_id for x in await store.dead_letters()] == ["c"]
        assert store.ledger().accepted == 3 and store.ledger().balanced
        assert await store.add(arrival("z", 1)) is AddResult.BUFFERED  # the new tables take writes
    finally:
        await store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.anyio
async def test_summarize_reads_the_file_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await (await _filled(path)).close()
    before = path.read_bytes()
    summary = summarize(path)
    assert (summary.pending, summary.in_flight, summary.batches_in_flight, summary.dead_letters) == (2, 1, 1, 1)
    assert summary.sent_remembered == 1 and summary.lanes == (7,) and summary.schema_version == SCHEMA_VERSION
    assert path.read_bytes() == before
    with pytest.raises(StoreOpenError, match="does not exist"):
        summarize(tmp_path / "missing.db")


@pytest.mark.anyio
async def test_sqlite_keeps_sent_versions_within_its_bound(tmp_path: Path) -> None:
    """The file does not grow with every order ever sent: it keeps the newest `remember_sent`."""
    path = tmp_path / "state.db"
    store = SqliteStore.open(path, settings=StoreSettings(remember_sent=10))
    for round_ in range(5):
        for n in range(10):
            await store.add(arrival(f"r{round_}-{n}"))
        batch = await store.take(7, 100, batch_id=f"b{round_}", attempt=1)
        assert batch is not None
        await store.settle(batch, Settlement(batch.entries, (), (), ()))
    await store.close()
    assert summarize(path).sent_remembered == 10


def test_memory_store_is_the_same_contract() -> None:
    """Both stores satisfy the protocol the buffer uses (a static check, made here at run time too)."""
    for kind in (MemoryStore, SqliteStore):
        for name in ("add", "take", "settle", "add_dead_letters", "recover", "close", "available", "ledger"):
            assert callable(getattr(kind, name))


@pytest.mark.anyio
async def test_sqlite_keeps_delivery_ids_across_a_restart_and_bounds_them(tmp_path: Path) -> None:
    """Delivery ids are in the file: a reopened store still answers a platform's retry as seen,
    not one whose TTL ran out; the file keeps at most `dedupe_max_entries` of them."""
    path = tmp_path / "state.db"
    now = time.time()
    store = SqliteStore.open(path, settings=StoreSettings(dedupe_ttl=3600.0, dedupe_max_entries=2000))
    await store.add(arrival("a", 1, received=now)._replace(delivery_id="taken"))
    store.remember_delivery(7, "ignored-topic", now)
    store.remember_delivery(7, "long-ago", now - 7200.0)  # expired already
    for n in range(3000):  # enough to prune the file by count
        store.remember_delivery(8, f"bulk-{n}", now)
    await store.close()
    with sqlite3.connect(path) as raw:
        kept = raw.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert kept <= 2000 + 1024, kept  # pruned every 1,024 ids

    again = SqliteStore.open(path, settings=StoreSettings(dedupe_ttl=3600.0, dedupe_max_entries=2000))
    try:
        assert again.seen_delivery(8, "bulk-2999", now)
        assert not again.seen_delivery(8, "bulk-0", now)  # past the bound
        assert not again.seen_delivery(7, "long-ago", now)
        await again.prune(now)
    finally:
        await again.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM deliveries").fetchone()[0] <= 2000


@pytest.mark.anyio
async def test_sqlite_dead_letter_keeps_its_webhook_body_in_the_file_until_pruned(tmp_path: Path) -> None:
    """The webhook body a dead letter came from is in the file (zlib), for a replay; the process
    does not hold it; pruning past the retention deletes it with the letter."""
    path = tmp_path / "state.db"
    webhook = b'{"id": 820982911946154508, "currency": "JPY"}' * 20
    store = SqliteStore.open(path, settings=StoreSettings(dead_letter_retention=100.0))
    letter = DeadLetter(
        7, "shopify", None, "unsupported_currency", "JPY", delivery_id="d-1", at=1000.0, webhook=webhook
    )
    await store.add_dead_letters([letter])
    assert (await store.dead_letters())[0].webhook is None  # the mirror keeps metadata
    with sqlite3.connect(path) as raw:
        (stored,) = raw.execute("SELECT webhook FROM dead_letters").fetchone()
    assert zlib.decompress(stored) == webhook
    assert await store.prune(1200.0) == 1
    await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


@pytest.mark.anyio
async def test_sqlite_file_stays_flat_under_steady_load(tmp_path: Path) -> None:
    """Orders in, batches out, round after round: freed pages are reused, sent versions and
    delivery ids are pruned to their bounds and the WAL is checkpointed — the file (with its
    WAL) stops growing once the bounds are reached (bench/store_bench.py measures it at scale)."""
    path = tmp_path / "state.db"
    store = SqliteStore.open(
        path, synchronous="normal", settings=StoreSettings(remember_sent=200, dedupe_max_entries=400)
    )
    sizes = []
    for round_ in range(16):
        names = [f"r{round_}-{n}" for n in range(300)]
        await asyncio.gather(*(store.add(arrival(name)._replace(delivery_id=name)) for name in names))
        while (batch := await store.take(7, 100, batch_id=f"b{round_}", attempt=1)) is not None:
            await store.settle(batch, sent(batch))
        sizes.append(sum(f.stat().st_size for f in tmp_path.glob("state.db*")))
    await store.close()
    assert max(sizes[8:]) <= sizes[7] * 1.2, sizes


@pytest.mark.anyio
async def test_sqlite_is_one_process_per_file(tmp_path: Path) -> None:
    """A second opener of the same file is refused (it would trust a mirror the first one changes
    under it); once the first closes, it may."""
    path = tmp_path / "state.db"
    first = SqliteStore.open(path)
    with pytest.raises(StoreOpenError, match="in use by another order-bridge process"):
        SqliteStore.open(path)
    await first.close()
    again = SqliteStore.open(path)
    await again.close()


@pytest.mark.anyio
async def test_sqlite_file_keeps_what_the_admin_api_changed(tmp_path: Path) -> None:
    """Paused lanes, dead letters' ids and attempts, the resolved counts and histories outlive
    the process; a new letter's id is above every earlier one, even a deleted last one."""
    path = tmp_path / "state.db"
    first = SqliteStore.open(path)
    await first.set_paused(7, True)
    await first.add_dead_letters([DeadLetter(7, "shopify", str(n), "unsupported_currency", "JPY") for n in range(3)])
    await first.dead_letter_failed_again(1, "again", 10.0)
    await first.resolve_dead_letter(3, "discarded")
    await first.add(arrival("a", 1, received=time.time())._replace(order_number="#7"))
    before = (await first.dead_letters(), first.ledger())
    await first.close()

    again = SqliteStore.open(path)
    try:
        assert (await again.dead_letters(), again.ledger()) == before and again.paused() == frozenset({7})
        assert [s.outcome for s in await again.history(7, order_number="#7")] == ["buffered"]
        await again.add_dead_letters([DeadLetter(7, "shopify", "x", "unsupported_currency", "JPY")])
        assert (await again.dead_letters())[-1].id == 4
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_replayed_letter_leaves_with_its_orders_arrival(new_store: StoreFactory) -> None:
    """`Arrival.replay_of`: the letter goes in the same commit as the order's arrival, whatever
    its outcome (buffered, or stale: a newer version went already), and the ledger counts it."""
    store = await new_store()
    await store.add_dead_letters([DeadLetter(7, "shopify", "a", "sendcloud_rejected", "x") for _ in range(2)])
    assert await store.add(arrival("a", 5)._replace(replay_of=1)) is AddResult.BUFFERED
    assert await store.add(arrival("a", 1)._replace(replay_of=2)) is AddResult.STALE
    assert await store.dead_letters() == [] and store.ledger().replayed == 2 and store.ledger().balanced
    assert [s.event for s in await store.history(7, order_id="a")] == ["replayed", "replayed"]


@pytest.mark.anyio
async def test_sqlite_replay_is_one_commit(tmp_path: Path) -> None:
    """A commit that fails leaves both the letter and the lane as they were; one that succeeds
    is in the file after a restart."""
    path = tmp_path / "state.db"
    store = SqliteStore.open(path)
    await store.add_dead_letters([DeadLetter(7, "shopify", "a", "sendcloud_rejected", "x")])
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # the next commit cannot take the file
    with pytest.raises(StoreUnavailable):
        await store.add(arrival("a", 5)._replace(replay_of=1))
    blocker.rollback()
    blocker.close()
    assert [d.id for d in await store.dead_letters()] == [1] and store.pending(7) == 0
    assert await store.add(arrival("a", 5)._replace(replay_of=1)) is AddResult.BUFFERED
    await store.close()
    again = SqliteStore.open(path)
    try:
        assert await again.dead_letters() == [] and again.pending(7) == 1 and again.ledger().replayed == 1
    finally:
        await again.close()

"""The PostgreSQL store's version rules in SQL, on a real PostgreSQL (`tests/postgres.py`): the
schema migrates once however many replicas start together; a newer version replaces the pending
one, an older one or a repeat is stale — against the pending, in-flight and sent versions — and
two replicas racing with versions of the same orders, in any order, keep the newest of each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from service.lease import SCHEMA as LEASES
from service.lease import Lease, LostLease, acquire
from service.store import AddResult, Batch, DeadLetter, Settlement
from service.store.postgres import (
    CHANNEL,
    MIGRATIONS,
    LaneCounts,
    accept,
    lane_snapshot,
    ledger_counts,
    migrate,
    settle,
    take,
    taken_by,
)
from tests.versions import T0, arrival

BUFFERED, COALESCED, STALE, DUPLICATE = AddResult.BUFFERED, AddResult.COALESCED, AddResult.STALE, AddResult.DUPLICATE


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=6)
    async with created.acquire() as connection:
        await migrate(connection)
    yield created
    await created.close()


@pytest.mark.anyio
async def test_replicas_starting_together_migrate_once(pg_dsn: str) -> None:
    connections = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        found = await asyncio.gather(*(migrate(c) for c in connections))
        assert sorted(found) == [0, len(MIGRATIONS), len(MIGRATIONS)]  # one migrated, the others waited
        versions = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))
        await connections[0].execute("INSERT INTO schema_migrations (version) VALUES (99)")
        with pytest.raises(RuntimeError, match="newer than this order-bridge knows"):
            await migrate(connections[1])
    finally:
        for connection in connections:
            await connection.close()


@pytest.mark.anyio
async def test_newest_version_wins_and_repeats_are_stale(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as c:
        assert await accept(c, [arrival("a", 10, received=1.0)]) == [BUFFERED]
        assert await accept(c, [arrival("a", 12, received=2.0)]) == [COALESCED]
        assert await accept(c, [arrival("a", 11, received=3.0)]) == [STALE]  # older than pending
        assert await accept(c, [arrival("a", 12, received=4.0)]) == [STALE]  # a repeat: same time and content
        assert await accept(c, [arrival("a", 12, received=5.0, number="#2")]) == [COALESCED]  # other content
        row = await c.fetchrow("SELECT p_updated_at, p_received_at, p_position, p_seq FROM orders")
        assert row is not None
        assert row["p_updated_at"] == arrival("a", 12).updated_at and row["p_received_at"] == 1.0
        assert row["p_position"] < row["p_seq"]  # kept its place in line
        # two versions of one order and another order in one group: in arrival order
        assert await accept(c, [arrival("b", 1), arrival("b", 3), arrival("b", 2), arrival("c", 1)]) == [
            BUFFERED,
            COALESCED,
            STALE,
            BUFFERED,
        ]
        counts = await ledger_counts(c)
    assert (counts["accepted"], counts["superseded"], counts["pending"]) == (6, 3, 3)
    assert counts["accepted"] == counts["sent"] + counts["superseded"] + counts["dead_lettered"] + counts["pending"]


@pytest.mark.anyio
async def test_older_than_in_flight_or_sent_is_stale(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as c:
        await accept(c, [arrival("a", 5), arrival("b", 5)])
        # a's version goes in flight and b's is sent (what the leader's take and settle will do)
        await c.execute(
            "UPDATE orders SET f_batch = 'b1', f_seq = p_seq, f_updated_at = p_updated_at, f_digest = p_digest, "
            "p_seq = NULL, p_body = NULL WHERE order_id = 'a'"
        )
        await c.execute(
            "UPDATE orders SET s_seq = p_seq, s_updated_at = p_updated_at, s_digest = p_digest, "
            "p_seq = NULL, p_body = NULL WHERE order_id = 'b'"
        )
        assert await accept(c, [arrival("a", 4), arrival("a", 5), arrival("b", 4), arrival("b", 5)]) == [STALE] * 4
        assert await accept(c, [arrival("a", 6), arrival("b", 6)]) == [BUFFERED, BUFFERED]


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [12, 13, 14])
async def test_replicas_racing_keep_the_newest_version_of_every_order(pool: asyncpg.Pool, seed: int) -> None:
    """40 orders, 8 versions each, shuffled and dealt to four replicas that write groups of
    random sizes (repeats of one order in a group too) at the same time: every order ends at its
    newest version, and the ledger balances with every accepted version pending or superseded."""
    shuffled = [arrival(f"o{n}", minute, received=float(minute)) for n in range(40) for minute in range(8)]
    random.Random(seed).shuffle(shuffled)
    dealt = [shuffled[k::4] for k in range(4)]
    chooser = random.Random(seed + 1)

    async def replica(arrivals: list) -> None:  # type: ignore[type-arg]
        async with pool.acquire() as c:
            i = 0
            while i < len(arrivals):
                size = chooser.randint(1, 12)
                await accept(c, arrivals[i : i + size])
                i += size
                await asyncio.sleep(0)

    await asyncio.gather(*(replica(part) for part in dealt))
    async with pool.acquire() as c:
        rows = await c.fetch("SELECT order_id, p_updated_at FROM orders")
        counts = await ledger_counts(c)
    newest = arrival("x", 7).updated_at
    assert len(rows) == 40 and all(row["p_updated_at"] == newest for row in rows)
    assert counts["pending"] == 40 and counts["accepted"] == counts["superseded"] + 40
    assert counts["accepted"] <= 40 * 8 and T0.timestamp() < newest


@pytest.mark.anyio
async def test_delivery_ids_are_shared_by_every_replica(pool: asyncpg.Pool) -> None:
    """A delivery id taken by one replica is in the database for all of them, until its TTL: a
    retry, in the same group or at another replica, is a duplicate and changes nothing."""
    first = arrival("a", 1, received=1000.0)._replace(delivery_id="d-1")
    retried = arrival("a", 1, received=1010.0)._replace(delivery_id="d-1")
    async with pool.acquire() as a, pool.acquire() as b:
        assert await accept(a, [first, retried], dedupe_ttl=60.0) == [BUFFERED, DUPLICATE]
        assert await b.fetchval("SELECT expires_at FROM deliveries WHERE key = '7:d-1'") == 1060.0
        # another replica: a retry within the TTL is a duplicate, after it a new delivery
        newer = arrival("a", 2, received=1059.0)._replace(delivery_id="d-1")
        assert await accept(b, [newer], dedupe_ttl=60.0) == [DUPLICATE]
        assert await accept(b, [newer._replace(received_at=1060.0)], dedupe_ttl=60.0) == [COALESCED]
        assert await b.fetchval("SELECT expires_at FROM deliveries WHERE key = '7:d-1'") == 1120.0
        assert await accept(b, [arrival("b", 1, received=1020.0)._replace(delivery_id="d-2")]) == [BUFFERED]
        keys = await a.fetch("SELECT key FROM deliveries ORDER BY key")
    assert [row["key"] for row in keys] == ["7:d-1", "7:d-2"]


# ---------------------------------------------------------------- the leader's take and settle


LEADER = "replica-a"
NOW = 1_700_000_000.0


async def leader_lease(connection: Any) -> Lease:
    await connection.execute(LEASES)
    lease = await acquire(connection, "account", LEADER, now=NOW, ttl=10.0)
    assert lease is not None
    return lease


def settlement(batch: Batch, sent: str = "", dead: str = "", retry: str = "") -> Settlement:
    """A settlement of `batch` by order id letters: which were sent, refused, retried."""
    pick = {entry.order_id: entry for entry in batch.entries}
    dead_entries = tuple(pick[i] for i in dead)
    letters = tuple(
        DeadLetter(7, "shopify", e.order_id, "sendcloud_rejected", "x", "/p", order=e.order, at=NOW, batch_id=batch.id)
        for e in dead_entries
    )
    return Settlement(tuple(pick[i] for i in sent), letters, dead_entries, tuple(pick[i] for i in retry))


async def balanced(connection: Any) -> dict[str, int]:
    counts = await ledger_counts(connection)
    assert counts["accepted"] == counts["sent"] + counts["superseded"] + counts["dead_lettered"] + counts["pending"]
    return counts


@pytest.mark.anyio
async def test_the_leader_takes_oldest_first_resends_what_is_in_flight_and_settles(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as c:
        lease = await leader_lease(c)
        for name in "abcde":
            await accept(c, [arrival(name, 1, received=float(ord(name)))])
        batch = await take(c, lease, 7, 3, batch_id="b1", attempt=1, now=NOW)
        assert batch is not None and [e.order_id for e in batch.entries] == ["a", "b", "c"]
        assert batch.entries[0].order.json == arrival("a", 1).order.json  # the body travels with it
        again = await take(c, lease, 7, 3, batch_id="b2", attempt=2, now=NOW)
        assert again == batch  # at most one batch per lane: the one in flight goes again
        # a newer version of b arrives while b is in flight: pending, for the next batch
        assert await accept(c, [arrival("b", 2, received=200.0)]) == [BUFFERED]
        assert await accept(c, [arrival("c", 1)]) == [STALE]  # a repeat of the one in flight

        settled = await settle(c, lease, batch, settlement(batch, sent="a", dead="c", retry="b"), now=NOW)
        assert settled.superseded == 1 and [x.order_id for x in settled.kept] == ["c"] and settled.kept[0].id > 0
        assert await accept(c, [arrival("a", 1)]) == [STALE]  # a repeat of the one sent
        counts = await balanced(c)
        assert (counts["sent"], counts["dead_lettered"], counts["superseded"], counts["pending"]) == (1, 1, 1, 3)

        following = await take(c, lease, 7, 10, batch_id="b3", attempt=1, now=NOW)
        assert following is not None
        # b's newer version took b's place at the front, with b's first receipt time; then d, e
        assert [(e.order_id, e.updated_at) for e in following.entries][:1] == [("b", arrival("b", 2).updated_at)]
        assert [e.order_id for e in following.entries] == ["b", "d", "e"]
        assert following.entries[0].received_at == float(ord("b"))
        await settle(c, lease, following, settlement(following, retry="bde"), now=NOW)
        back = await take(c, lease, 7, 10, batch_id="b4", attempt=2, now=NOW)
        assert back is not None and [e.order_id for e in back.entries] == ["b", "d", "e"]  # retried: in front, in order
        await balanced(c)
        letter = await c.fetchrow("SELECT order_id, reason, pointer, body IS NOT NULL AS kept FROM dead_letters")
        assert letter is not None and tuple(letter) == ("c", "sendcloud_rejected", "/p", True)


@pytest.mark.anyio
async def test_a_leader_that_lost_its_lease_changes_nothing(pool: asyncpg.Pool) -> None:
    """A paused old leader (its lease taken over at a new generation) can neither take a batch
    nor settle the one it had: both raise `LostLease` and roll back."""
    async with pool.acquire() as c, pool.acquire() as other:
        old = await leader_lease(c)
        await accept(c, [arrival("a", 1), arrival("b", 1)])
        batch = await take(c, old, 7, 1, batch_id="b1", attempt=1, now=NOW)
        assert batch is not None
        new = await acquire(other, "account", "replica-b", now=NOW + 11, ttl=10.0)
        assert new is not None
        with pytest.raises(LostLease):
            await settle(c, old, batch, settlement(batch, sent="a"), now=NOW + 12)
        with pytest.raises(LostLease):
            await take(c, old, 7, 5, batch_id="b9", attempt=1, now=NOW + 12)
        # the new leader finds the batch still in flight, resends and settles it
        resent = await take(other, new, 7, 5, batch_id="b2", attempt=1, now=NOW + 12)
        assert resent == batch
        await settle(other, new, resent, settlement(resent, sent="a"), now=NOW + 12)
        counts = await balanced(c)
        assert (counts["sent"], counts["pending"]) == (1, 1)


@pytest.mark.anyio
async def test_twenty_replicas_accepting_at_once_never_deadlock(pg_dsn: str) -> None:
    """Every group locks its orders' rows, then the ledger's counters, each in one fixed order:
    twenty connections writing overlapping groups at once all commit, and the ledger balances.
    (A stress run: the counters deadlock a review found with one multi-row UPDATE, 25 in 15 s of
    24 connections, did not show in this shorter run either way — the fixed order is what
    rules it out.)"""
    pool = await asyncpg.create_pool(pg_dsn, min_size=20, max_size=20)
    try:
        async with pool.acquire() as c:
            await migrate(c)

        async def replica(k: int) -> int:
            chooser = random.Random(k)
            written = 0
            async with pool.acquire() as c:
                for round_ in range(40):
                    group = [arrival(f"o{chooser.randrange(60)}", round_ * 20 + k) for _ in range(8)]
                    await accept(c, group)
                    written += len(group)
            return written

        assert sum(await asyncio.gather(*(replica(k) for k in range(20)))) == 20 * 40 * 8
        async with pool.acquire() as c:
            counts = await balanced(c)
        assert counts["pending"] <= 60 and counts["accepted"] > 60
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_acceptors_racing_the_leader_never_send_an_older_version_after_a_newer_one(pool: asyncpg.Pool) -> None:
    """Three acceptors write versions of 10 orders in shuffled order while the leader takes
    and settles batches (sent, with a retry now and then); then the leader drains. Every order
    ends sent at its newest version, no order was ever sent at an older version than one sent
    before, and the ledger balances."""
    versions = [arrival(f"o{n}", minute, received=float(minute)) for n in range(10) for minute in range(6)]
    random.Random(21).shuffle(versions)
    sent_at: dict[str, list[float]] = {}
    done = asyncio.Event()

    async def acceptor(part: list) -> None:  # type: ignore[type-arg]
        async with pool.acquire() as c:
            for i in range(0, len(part), 3):
                await accept(c, part[i : i + 3])
                await asyncio.sleep(0)

    async def leader() -> None:
        chooser = random.Random(22)
        async with pool.acquire() as c:
            lease = await leader_lease(c)
            n = 0
            while True:
                n += 1
                batch = await take(c, lease, 7, 4, batch_id=f"b{n}", attempt=1, now=NOW)
                if batch is None:
                    if done.is_set():
                        return
                    await asyncio.sleep(0.005)
                    continue
                retry = "".join(e.order_id[-1] for e in batch.entries if chooser.random() < 0.2)
                keep = {e.order_id for e in batch.entries if e.order_id[-1] in retry}
                outcome = Settlement(
                    tuple(e for e in batch.entries if e.order_id not in keep),
                    (),
                    (),
                    tuple(e for e in batch.entries if e.order_id in keep),
                )
                await settle(c, lease, batch, outcome, now=NOW)
                for entry in outcome.sent:
                    sent_at.setdefault(entry.order_id, []).append(entry.updated_at)

    running = asyncio.ensure_future(leader())
    await asyncio.gather(*(acceptor(versions[k::3]) for k in range(3)))
    done.set()
    await asyncio.wait_for(running, 60)
    newest = arrival("x", 5).updated_at
    assert sorted(sent_at) == [f"o{n}" for n in range(10)]
    for order_id, times in sent_at.items():
        assert times == sorted(times) and times[-1] == newest, (order_id, times)
    async with pool.acquire() as c:
        counts = await balanced(c)
    assert counts["pending"] == 0


@pytest.mark.anyio
async def test_two_takes_of_one_lane_at_once_make_one_batch(pool: asyncpg.Pool) -> None:
    """A flush racing a timer (or two leaders during a config change): the lane lock makes the
    second take find the first one's batch in flight, and no version is lost."""
    async with pool.acquire() as a, pool.acquire() as b:
        lease = await leader_lease(a)
        await accept(a, [arrival(name, 1) for name in "xyz"])
        first, second = await asyncio.gather(
            take(a, lease, 7, 10, batch_id="b1", attempt=1, now=NOW),
            take(b, lease, 7, 10, batch_id="b2", attempt=1, now=NOW),
        )
        assert first is not None and first == second
        await accept(a, [arrival("x", 2)])
        await settle(a, lease, first, settlement(first, sent="xyz"), now=NOW)
        counts = await balanced(a)
    assert (counts["sent"], counts["pending"]) == (3, 1)


@pytest.mark.anyio
async def test_accept_wakes_the_leader_when_it_commits_and_the_snapshot_counts_lanes(pool: asyncpg.Pool) -> None:
    """A group that kept versions notifies the lanes' channel with their integration ids, on
    commit; a group of stale versions, or one rolled back, notifies nothing. The snapshot counts
    each lane's pending and in-flight versions and its oldest receipt."""
    heard: list[str] = []

    def hear(*args: Any) -> None:
        heard.append(args[-1])

    async with pool.acquire() as listener, pool.acquire() as c:
        await listener.add_listener(CHANNEL, hear)
        other = arrival("b", 1, received=50.0)._replace(integration_id=8)
        await accept(c, [arrival("a", 1, received=100.0), other, arrival("c", 1, received=70.0)])
        await accept(c, [arrival("a", 1)])  # stale: nothing to wake for
        with pytest.raises(RuntimeError):
            async with c.transaction():  # an acceptor whose commit never happens
                await accept(c, [arrival("d", 1)])
                raise RuntimeError("rolled back")
        for _ in range(200):  # notifications arrive asynchronously on the listener's connection
            if heard:
                break
            await asyncio.sleep(0.01)
        await listener.execute("SELECT 1")  # and anything still on its way arrives before this answer
        await listener.remove_listener(CHANNEL, hear)
        assert heard == ["7,8"]

        lease = await leader_lease(c)
        await take(c, lease, 7, 1, batch_id="b1", attempt=1, now=NOW)
        snapshot = await lane_snapshot(c)
    assert snapshot == {7: LaneCounts(1, 1, 70.0), 8: LaneCounts(1, 0, 50.0)}


@pytest.mark.anyio
async def test_a_new_leader_knows_a_batch_in_flight_came_from_an_older_generation(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as a, pool.acquire() as b:
        old = await leader_lease(a)
        await accept(a, [arrival("a", 1)])
        assert await taken_by(a, 7) is None
        await take(a, old, 7, 5, batch_id="b1", attempt=1, now=NOW)
        assert await taken_by(a, 7) == old.generation
        new = await acquire(b, "account", "replica-b", now=NOW + 11, ttl=10.0)
        assert new is not None and new.generation > old.generation
        assert await taken_by(b, 7) == old.generation  # older than its own: hold before resending


# ---------------------------------------------------------------- PostgresStore's lease


@pytest.mark.anyio
async def test_a_store_that_takes_the_lease_again_recovers_before_it_flushes(pg_dsn: str) -> None:
    """A process paused past its lease (its clock jumps) takes the lease again — a new
    generation, in one step — and is told so: it does not flush until it recovered under it."""
    from service.store.postgres.store import PostgresStore
    from tests.fakeclock import FakeClock

    clock = FakeClock()
    store = PostgresStore(pg_dsn, account="acct", clock=clock)
    told: list[bool] = []
    store.watch(lambda lanes, took_over: told.append(took_over))
    await store.connect()
    try:
        await store.recover()
        assert store.flushing()
        clock.now += 30.0  # paused: the lease ran out by this process's clock, nobody took it
        await clock.advance(1.5)  # the next poll: the keeper takes it again, generation 2
        for _ in range(200):
            if told:
                break
            await asyncio.sleep(0.02)
        assert told == [True] and not store.flushing()
        await store.recover()
        assert store.flushing()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@db:5432/ob", "postgresql://app:***@db:5432/ob"),
        ("postgresql://app:s3cr/et@db:5432/ob", "postgresql://app:***@db:5432/ob"),  # an unencoded '/'
        ("postgresql://app:p@ss#w?rd@db/ob", "postgresql://app:***@db/ob"),  # '@', '#', '?' in it
        ("postgresql://db/ob?password=pw&sslmode=require", "postgresql://db/ob"),
        ("postgresql://app@db:54x/ob", "postgresql://app@db:54x/ob"),  # a bad port: no exception
        ("not a url pw", "(a URL that is not scheme://…)"),
    ],
)
def test_a_store_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from service.store.postgres.store import redacted

    assert redacted(url) == shown
    assert "pw" not in shown and "s3cr" not in shown and "ss#" not in shown

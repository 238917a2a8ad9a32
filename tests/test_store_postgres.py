"""The PostgreSQL store's version rules in SQL, on a real PostgreSQL (`tests/postgres.py`): the
schema migrates once however many replicas start together; a newer version replaces the pending
one, an older one or a repeat is stale — against the pending, in-flight and sent versions — and
two replicas racing with versions of the same orders, in any order, keep the newest of each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.store import AddResult
from service.store.postgres import MIGRATIONS, accept, ledger_counts, migrate
from tests.versions import T0, arrival

BUFFERED, COALESCED, STALE = AddResult.BUFFERED, AddResult.COALESCED, AddResult.STALE


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
    """A delivery id taken by one replica is in the database for all of them, until its TTL
    (a retry of one delivery within a group is written once)."""
    first = arrival("a", 1, received=1000.0)._replace(delivery_id="d-1")
    retried = arrival("a", 1, received=1010.0)._replace(delivery_id="d-1")
    async with pool.acquire() as a, pool.acquire() as b:
        assert await accept(a, [first, retried], dedupe_ttl=60.0) == [BUFFERED, STALE]
        assert await b.fetchval("SELECT expires_at FROM deliveries WHERE key = '7:d-1'") == 1070.0
        assert await accept(b, [arrival("b", 1, received=1020.0)._replace(delivery_id="d-2")]) == [BUFFERED]
        keys = await a.fetch("SELECT key FROM deliveries ORDER BY key")
    assert [row["key"] for row in keys] == ["7:d-1", "7:d-2"]

"""The PostgreSQL store's schema, and its migrations recorded in the database (`migrate`: safe
when several replicas start at once, a transaction-level advisory lock serialises them)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MIGRATIONS", "Connection", "migrate"]

#: `MIGRATIONS[n]` brings the schema from version n to n + 1
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE SEQUENCE arrival_seq;
    CREATE TABLE orders (
        integration_id BIGINT NOT NULL,
        order_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        -- the pending version (p_seq NULL: none), its body (personal data) and place in line
        p_seq BIGINT,
        p_updated_at DOUBLE PRECISION,
        p_digest BYTEA,
        p_body BYTEA,
        p_received_at DOUBLE PRECISION,
        p_delivery_id TEXT,
        p_position DOUBLE PRECISION,
        -- the version in flight: batch f_batch, attempt, index in it (f_seq NULL: none)
        f_batch TEXT,
        f_generation BIGINT,                 -- the lease generation of the leader that took it
        f_attempt INTEGER,
        f_index INTEGER,
        f_seq BIGINT,
        f_updated_at DOUBLE PRECISION,
        f_digest BYTEA,
        f_body BYTEA,
        f_received_at DOUBLE PRECISION,
        f_delivery_id TEXT,
        -- the version last sent (s_seq NULL: none)
        s_seq BIGINT,
        s_updated_at DOUBLE PRECISION,
        s_digest BYTEA,
        -- set by each write: whether a pending version was there before it (coalesced)
        replaced_pending BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (integration_id, order_id)
    );
    CREATE INDEX orders_pending ON orders (integration_id, p_position) WHERE p_seq IS NOT NULL;
    CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO counters (name, value) VALUES
        ('accepted', 0), ('sent', 0), ('superseded', 0), ('dead_lettered', 0), ('replayed', 0), ('discarded', 0);
    CREATE INDEX orders_in_flight ON orders (integration_id, f_index) WHERE f_seq IS NOT NULL;
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY,                -- "<integration id>:<delivery id>"
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE flusher_leases (
        account TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        generation BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE dead_letters (
        id BIGSERIAL PRIMARY KEY,
        integration_id BIGINT NOT NULL,
        platform TEXT NOT NULL,
        order_id TEXT,
        order_number TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        pointer TEXT,
        delivery_id TEXT,
        body BYTEA,                          -- the order as sent (personal data)
        webhook BYTEA,                       -- the webhook body it came from, if untranslatable
        at DOUBLE PRECISION NOT NULL,
        batch_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: what a Store needs beyond orders, and ledger counts that replicas add without waiting
    # for each other (a delta row per transaction, folded into `counters` by `fold_counts`)
    """
    CREATE TABLE counter_deltas (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, value BIGINT NOT NULL);
    CREATE TABLE paused_lanes (integration_id BIGINT PRIMARY KEY);
    CREATE TABLE history (
        id BIGSERIAL PRIMARY KEY,
        integration_id BIGINT NOT NULL,
        order_id TEXT NOT NULL,
        order_number TEXT,
        at DOUBLE PRECISION NOT NULL,
        step BYTEA NOT NULL                  -- a HistoryEvent as JSON: ids, times, outcomes only
    );
    CREATE INDEX history_by_order ON history (integration_id, order_id);
    CREATE INDEX history_by_number ON history (integration_id, order_number) WHERE order_number IS NOT NULL;
    CREATE INDEX history_by_time ON history (at);
    CREATE INDEX dead_letters_by_time ON dead_letters (at);
    CREATE INDEX deliveries_by_expiry ON deliveries (expires_at);
    CREATE INDEX orders_by_generation ON orders (f_generation) WHERE f_seq IS NOT NULL;
    """,
    # 3: order bodies kept out of line uncompressed: compressing ~2.5 kB of JSON on every accept
    # and take cost the database more CPU than the bytes it saved
    """
    ALTER TABLE orders ALTER COLUMN p_body SET STORAGE EXTERNAL, ALTER COLUMN f_body SET STORAGE EXTERNAL;
    """,
)

#: any number, the same in every replica: the advisory lock that serialises migrations
_MIGRATION_LOCK = 0x6F72646572  # "order"


class Connection(Protocol):
    """What of an asyncpg connection this module uses."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    def transaction(self) -> Any: ...


async def migrate(connection: Connection) -> int:
    """Bring the schema to `len(MIGRATIONS)`; each step and its record in `schema_migrations`
    commit together. Returns the version found before. A database from a newer order-bridge is
    refused (`RuntimeError`)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        found = int(await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
        if found > len(MIGRATIONS):
            raise RuntimeError(
                f"the database has schema version {found}, newer than this order-bridge knows ({len(MIGRATIONS)})"
            )
        for version in range(found, len(MIGRATIONS)):
            await connection.execute(MIGRATIONS[version])
            await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version + 1)
    return found

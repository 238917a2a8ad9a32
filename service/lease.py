"""Electing one flusher per Sendcloud account among replicas on PostgreSQL (issue 12 groundwork).

Sendcloud's rate limit is per account, so exactly one replica may send for an account: the one
holding its **lease** — a row with the holder, an expiry and a **generation** that grows by one
every time the lease changes hands. The generation is the fencing token: every state change a
flusher makes runs `fence()` in its own transaction first, which locks the lease row (`FOR
SHARE`) and checks that the flusher still holds it at its generation; a paused old leader whose
lease was taken over fails that check and changes nothing, and a takeover waits for a fenced
transaction in progress to commit. Correctness rests on the generation; time only decides when
a lease may be taken: a replica takes an expired lease (or renews its own) with `acquire()`,
and renews it by heartbeat with `renew()`. `release()` gives it up at shutdown so another
replica takes over at once.

Times are wall-clock POSIX seconds passed in by the caller (its `service.clock.Clock`), so the
rules are testable without sleeping; replicas' clocks must agree to well within the lease
(`ttl`, 10 s by default) — NTP does — or a lease is taken late or early, never by two at once
for a state change (the generation decides).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from asyncpg import PostgresError as DatabaseError
from asyncpg.exceptions import InterfaceError

from service.clock import Clock

__all__ = ["SCHEMA", "Lease", "LeaseKeeper", "LostLease", "account_key", "acquire", "fence", "release", "renew"]

_log = structlog.get_logger("order_bridge.lease")

SCHEMA = """
CREATE TABLE IF NOT EXISTS flusher_leases (      -- also migration 1 of service.store.postgres
    account TEXT PRIMARY KEY,              -- account_key(): a hash of the Sendcloud public key
    holder TEXT NOT NULL,                  -- the replica holding it
    generation BIGINT NOT NULL,            -- +1 each time it changes hands: the fencing token
    expires_at DOUBLE PRECISION NOT NULL   -- POSIX seconds
)
"""


class Connection(Protocol):
    """What of an asyncpg connection this module uses."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


class LostLease(Exception):
    """The lease is no longer this holder's (expired, or taken over at a newer generation)."""


@dataclass(frozen=True, slots=True)
class Lease:
    account: str
    holder: str
    generation: int
    expires_at: float


def account_key(public_key: str) -> str:
    """The lease key of a Sendcloud account: a hash of its public key (the key itself is not
    written to the database)."""
    return hashlib.blake2b(public_key.encode(), digest_size=16).hexdigest()


async def acquire(connection: Connection, account: str, holder: str, *, now: float, ttl: float) -> Lease | None:
    """Take the account's lease if it is free, expired or held under this `holder` name; None
    when another holder has it. The generation grows every time, even for the same name: a
    second process under a name still holding it (a restarted pod while the old one ends) must
    not share a generation with it — the old one's fence then fails. Names should be unique per
    process all the same (host, pid, a random part). A holder renews with `renew`."""
    row = await connection.fetchrow(
        """
        INSERT INTO flusher_leases AS l (account, holder, generation, expires_at)
        VALUES ($1, $2, 1, $3::float8 + $4::float8)
        ON CONFLICT (account) DO UPDATE SET
            holder = excluded.holder,
            generation = l.generation + 1,
            expires_at = excluded.expires_at
        WHERE l.holder = excluded.holder OR l.expires_at <= $3::float8
        RETURNING generation, expires_at
        """,
        account,
        holder,
        now,
        ttl,
    )
    return None if row is None else Lease(account, holder, row["generation"], row["expires_at"])


async def renew(connection: Connection, lease: Lease, *, now: float, ttl: float) -> Lease:
    """Extend a live lease (the heartbeat); `LostLease` if it expired or changed hands."""
    row = await connection.fetchrow(
        """
        UPDATE flusher_leases SET expires_at = $4::float8 + $5::float8
        WHERE account = $1 AND holder = $2 AND generation = $3 AND expires_at > $4::float8
        RETURNING expires_at
        """,
        lease.account,
        lease.holder,
        lease.generation,
        now,
        ttl,
    )
    if row is None:
        raise LostLease(f"lease of {lease.account} lost by {lease.holder} (generation {lease.generation})")
    return Lease(lease.account, lease.holder, lease.generation, row["expires_at"])


async def fence(connection: Connection, lease: Lease, *, now: float) -> None:
    """Inside the transaction of a state change: hold the lease row (a takeover waits for this
    transaction) and check the lease is still this holder's, at its generation and unexpired;
    `LostLease` otherwise — the caller rolls back and changes nothing."""
    row = await connection.fetchrow(
        """
        SELECT generation FROM flusher_leases
        WHERE account = $1 AND holder = $2 AND generation = $3 AND expires_at > $4::float8
        FOR SHARE
        """,
        lease.account,
        lease.holder,
        lease.generation,
        now,
    )
    if row is None:
        raise LostLease(f"lease of {lease.account} no longer held by {lease.holder} at generation {lease.generation}")


async def release(connection: Connection, lease: Lease) -> bool:
    """Give the lease up (shutdown): another replica may take it at once. False when it was not
    this holder's any more."""
    row = await connection.fetchrow(
        """
        UPDATE flusher_leases SET expires_at = 0
        WHERE account = $1 AND holder = $2 AND generation = $3
        RETURNING generation
        """,
        lease.account,
        lease.holder,
        lease.generation,
    )
    return row is not None


class Pool(Protocol):
    """What of an asyncpg pool `LeaseKeeper` uses: `async with pool.acquire() as connection`."""

    def acquire(self) -> Any: ...


class LeaseKeeper:
    """Holds one account's lease for this replica as long as it can: takes it when it is free or
    expired, renews it every `heartbeat` seconds, and lets go at `stop()`.

    `held()` is the lease while it is unexpired by this replica's clock — a leader that cannot
    renew (its database connection is down, or it was paused) stops taking itself for the leader
    at the lease's expiry, whether or not it could ask the database; the fence catches the rest.
    Defaults: a 10 s lease renewed every 3 s, so a dead leader is replaced within 13 s.
    """

    def __init__(
        self,
        pool: Pool,
        account: str,
        holder: str,
        clock: Clock,
        *,
        ttl: float = 10.0,
        heartbeat: float = 3.0,
        lock_timeout: float = 1.0,
    ) -> None:
        if not 0 < heartbeat < ttl:
            raise ValueError("the heartbeat must be shorter than the lease")
        #: how long a renewal waits behind transactions holding the lease row (fenced state
        #: changes): past it the heartbeat gives up this round instead of eating into the lease
        self.lock_timeout = lock_timeout
        self.pool = pool
        self.account = account
        self.holder = holder
        self.clock = clock
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.lease: Lease | None = None

    def held(self) -> Lease | None:
        lease = self.lease
        return lease if lease is not None and lease.expires_at > self.clock.wall() else None

    async def step(self) -> Lease | None:
        """One round: renew the lease held, or try to take it; the lease held afterwards."""
        now = self.clock.wall()
        try:
            async with self.pool.acquire() as connection:
                if self.held() is not None:
                    assert self.lease is not None
                    async with connection.transaction():
                        await connection.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                        self.lease = await renew(connection, self.lease, now=now, ttl=self.ttl)
                else:
                    if self.lease is not None:
                        _log.warning("lease.expired", account=self.account, generation=self.lease.generation)
                        self.lease = None
                    taken = await acquire(connection, self.account, self.holder, now=now, ttl=self.ttl)
                    if taken is not None:
                        _log.info(
                            "lease.acquired", account=self.account, holder=self.holder, generation=taken.generation
                        )
                    self.lease = taken
        except LostLease:
            _log.warning("lease.lost", account=self.account, holder=self.holder)
            self.lease = None
        except (OSError, TimeoutError, DatabaseError, InterfaceError) as exc:
            # the database cannot be asked: keep what is held until it expires by our clock
            _log.error("lease.unreachable", account=self.account, cause=type(exc).__name__)
        return self.held()

    async def run(self, stopping: asyncio.Event) -> None:
        """Steps every `heartbeat` seconds until `stopping` is set, then releases the lease."""
        while not stopping.is_set():
            await self.step()
            await self.clock.wait(stopping, self.heartbeat)
        await self.stop()

    async def stop(self) -> None:
        """Give the lease up so another replica takes over at once (nothing if none is held)."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            async with self.pool.acquire() as connection:
                await release(connection, lease)
        except (OSError, TimeoutError, DatabaseError, InterfaceError) as exc:
            _log.error("lease.release_failed", account=self.account, cause=type(exc).__name__)
        else:
            _log.info("lease.released", account=self.account, generation=lease.generation)

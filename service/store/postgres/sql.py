"""The PostgreSQL store's statements on orders: acceptance (any replica) and the flusher's take
and settle.

`accept`: a group of arrivals written in one transaction, with the version rules of DESIGN §5
done **in SQL**, so replicas racing with versions of one order keep the newest wherever each
arrives. `take` and `settle` are the flusher's, each in a transaction that first checks its
lease (`service.lease.fence`), so a flusher that lost the lease changes nothing.

One row per order (`orders`) holds its pending version (`p_*`), the version in flight (`f_*`)
and the version last sent (`s_*`), so every comparison of a new version happens under the one
row lock `INSERT … ON CONFLICT DO UPDATE … WHERE` takes: a version is kept when it is newer than
each of the three — a later update time, or the same update time with other content (a repeat
is stale) — exactly `MemoryStore`'s rule. Arrival numbers come from a sequence. A group with
two versions of one order is written in rounds (first occurrences, then second ones, …) inside
the same transaction, as if they had arrived one after another. The first round touches every
order of the group, in key order: every replica takes its row locks in that one order, so two
groups never deadlock (the leader's `take`, when it comes, must lock in key order too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from adapters.sendcloud import EncodedOrder
from service.lease import Lease, fence
from service.store import AddResult, Arrival, Batch, DeadLetter, Entry, Settled, Settlement, digest
from service.store.postgres.schema import Connection

__all__ = [
    "CHANNEL",
    "COUNTERS",
    "ENTRY_COLUMNS",
    "LaneCounts",
    "accept",
    "accept_at_once",
    "accept_rows",
    "count",
    "counter_values",
    "entries",
    "entry",
    "fold_counts",
    "insert_dead_letter",
    "lane_lock",
    "lane_snapshot",
    "ledger_counts",
    "remember_deliveries",
    "settle",
    "take",
    "taken_by",
]


def _newer(than: str) -> str:
    """SQL: the arriving version (`excluded`) is newer than `o.<than>_*`, or there is none."""
    return (
        f"(o.{than}_seq IS NULL OR excluded.p_updated_at > o.{than}_updated_at OR "
        f"(excluded.p_updated_at = o.{than}_updated_at AND excluded.p_digest <> o.{than}_digest))"
    )


#: the version rules of DESIGN §5 under the order's row lock: kept when newer than its pending,
#: in-flight and sent versions
_KEEP_NEWEST = f"""
ON CONFLICT (integration_id, order_id) DO UPDATE SET
    platform = excluded.platform,
    replaced_pending = o.p_seq IS NOT NULL,
    -- numbered under the row lock: of two racing versions, the one kept last has the higher number
    p_seq = nextval('arrival_seq'),
    p_updated_at = excluded.p_updated_at,
    p_digest = excluded.p_digest,
    p_body = excluded.p_body,
    -- coalescing keeps the first receipt time and the place in line: the order has waited since
    p_received_at = CASE WHEN o.p_seq IS NULL THEN excluded.p_received_at
                         ELSE least(o.p_received_at, excluded.p_received_at) END,
    p_delivery_id = excluded.p_delivery_id,
    p_position = CASE WHEN o.p_seq IS NULL THEN excluded.p_position ELSE o.p_position END
WHERE {_newer("p")} AND {_newer("f")} AND {_newer("s")}
"""

_ACCEPT = f"""
INSERT INTO orders AS o (integration_id, order_id, platform, p_seq, p_updated_at, p_digest, p_body,
                         p_received_at, p_delivery_id, p_position, replaced_pending)
SELECT t.integration_id, t.order_id, t.platform, t.seq, t.updated_at, t.digest, t.body,
       t.received_at, t.delivery_id, t.seq, false
FROM (
    SELECT nextval('arrival_seq') AS seq, u.*
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::bytea[], $6::bytea[], $7::float8[], $8::text[])
         WITH ORDINALITY AS u(integration_id, order_id, platform, updated_at, digest, body, received_at, delivery_id, n)
    ORDER BY u.n
) AS t
{_KEEP_NEWEST}RETURNING o.integration_id, o.order_id, o.replaced_pending
"""


#: `accept_rows` as one statement (no transaction block: one round trip) for the common group —
#: each order once, no replay: the delivery ids taken (a retry's is not), the versions kept under
#: the version rules, the ledger counted, the lanes notified and the steps of earlier groups'
#: histories written, all in the statement's one implicit transaction
_ACCEPT_AT_ONCE = f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::bytea[], $6::bytea[],
                         $7::float8[], $8::text[], $9::text[], $10::float8[])
         WITH ORDINALITY AS u(integration_id, order_id, platform, updated_at, digest, body, received_at,
                              delivery_id, delivery_key, delivery_expiry, n)
),
taken AS (
    INSERT INTO deliveries AS d (key, expires_at)
    SELECT delivery_key, delivery_expiry FROM input WHERE delivery_key IS NOT NULL ORDER BY delivery_key COLLATE "C"
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
    WHERE d.expires_at <= excluded.expires_at - $11::float8
    RETURNING key
),
kept AS (
    INSERT INTO orders AS o (integration_id, order_id, platform, p_seq, p_updated_at, p_digest, p_body,
                             p_received_at, p_delivery_id, p_position, replaced_pending)
    SELECT t.integration_id, t.order_id, t.platform, t.seq, t.updated_at, t.digest, t.body,
           t.received_at, t.delivery_id, t.seq, false
    FROM (
        SELECT nextval('arrival_seq') AS seq, i.*
        FROM input AS i
        WHERE i.delivery_key IS NULL OR i.delivery_key IN (SELECT key FROM taken)
        ORDER BY i.n
    ) AS t
    {_KEEP_NEWEST}RETURNING o.integration_id, o.order_id, o.replaced_pending
),
counted AS (
    INSERT INTO counter_deltas (name, value)
    SELECT name, value FROM (
        SELECT 'accepted' AS name, count(*) AS value FROM kept
        UNION ALL SELECT 'superseded', count(*) FILTER (WHERE replaced_pending) FROM kept
    ) AS c
    WHERE value > 0
),
steps AS (
    INSERT INTO history (integration_id, order_id, order_number, at, step)
    SELECT * FROM unnest($13::bigint[], $14::text[], $15::text[], $16::float8[], $17::bytea[])
),
notified AS (
    SELECT pg_notify($12, string_agg(DISTINCT integration_id::text, ',')) FROM kept HAVING count(*) > 0
)
SELECT 'kept' AS kind, integration_id, order_id, replaced_pending, NULL::bigint AS xid FROM kept
UNION ALL SELECT 'taken', NULL, key, NULL, NULL FROM taken
UNION ALL SELECT 'xid', NULL, NULL, NULL, pg_current_xact_id()::text::bigint
UNION ALL SELECT 'notified', NULL, NULL, NULL, NULL FROM notified
"""


def _version_columns(arrivals: Sequence[Arrival]) -> list[list[Any]]:
    """The arrivals as the arrays `$1`…`$8` of `_ACCEPT` and `_ACCEPT_AT_ONCE`: integration id,
    order id, platform, update time, digest, body, receipt time, delivery id."""
    return [
        [a.integration_id for a in arrivals],
        [a.order.order_id for a in arrivals],
        [a.platform for a in arrivals],
        [a.updated_at for a in arrivals],
        [digest(a.order.json) for a in arrivals],
        [a.order.json for a in arrivals],
        [a.received_at for a in arrivals],
        [a.delivery_id for a in arrivals],
    ]


async def accept_at_once(
    connection: Connection,
    arrivals: Sequence[Arrival],
    steps: Sequence[tuple[int, str, str | None, float, bytes]],
    *,
    dedupe_ttl: float,
) -> tuple[list[AddResult], int] | None:
    """`accept_rows` for a group in which every order appears once and nothing is a replay, in
    one statement (one round trip, its own transaction), with `steps` — history rows
    (integration id, order id, number, time, step JSON) — written in it too. Returns each
    arrival's result and the transaction's id; None when the group does not qualify (the caller
    uses `accept_rows` in a transaction)."""
    if any(a.replay_of is not None for a in arrivals):
        return None
    if len({(a.integration_id, a.order.order_id) for a in arrivals}) != len(arrivals):
        return None
    results: list[AddResult] = [AddResult.STALE] * len(arrivals)
    keys: list[str | None] = []
    claimed: set[str] = set()
    for index, arrival in enumerate(arrivals):
        key = f"{arrival.integration_id}:{arrival.delivery_id}" if arrival.delivery_id else None
        if key is not None and key in claimed:  # a retry within the group
            results[index] = AddResult.DUPLICATE
        if key is not None:
            claimed.add(key)
        keys.append(key)
    # the group's rows in key order (Python's order of the UTF-8 strings, as `_lock`'s "C"):
    # every replica locks them in that one order
    chosen = sorted(
        (i for i in range(len(arrivals)) if results[i] is not AddResult.DUPLICATE),
        key=lambda i: (arrivals[i].integration_id, arrivals[i].order.order_id),
    )
    group = [arrivals[i] for i in chosen]
    rows = await connection.fetch(
        _ACCEPT_AT_ONCE,
        *_version_columns(group),
        [keys[i] for i in chosen],
        [a.received_at + dedupe_ttl for a in group],
        dedupe_ttl,
        CHANNEL,
        *([row[column] for row in steps] for column in range(5)),
    )
    taken = {row["order_id"] for row in rows if row["kind"] == "taken"}
    kept = {(row["integration_id"], row["order_id"]): row["replaced_pending"] for row in rows if row["kind"] == "kept"}
    (xid,) = [int(row["xid"]) for row in rows if row["kind"] == "xid"]
    for i in chosen:
        arrival = arrivals[i]
        if keys[i] is not None and keys[i] not in taken:
            results[i] = AddResult.DUPLICATE
            continue
        replaced = kept.get((arrival.integration_id, arrival.order.order_id))
        if replaced is not None:
            results[i] = AddResult.COALESCED if replaced else AddResult.BUFFERED
    return results, xid


async def accept(
    connection: Connection, arrivals: Sequence[Arrival], *, dedupe_ttl: float = 86_400.0
) -> list[AddResult]:
    """`accept_rows` in a transaction of its own."""
    async with connection.transaction():
        return await accept_rows(connection, arrivals, dedupe_ttl=dedupe_ttl)


async def accept_rows(
    connection: Connection, arrivals: Sequence[Arrival], *, dedupe_ttl: float = 86_400.0
) -> list[AddResult]:
    """Inside the caller's transaction: keep each arrival that is newer than its order's pending,
    in-flight and sent versions (one multi-row statement per round), unless its delivery id was
    taken already (by any replica, within `dedupe_ttl` of its receipt: `DUPLICATE`); the delivery
    ids are remembered and the ledger counted. Returns each arrival's result, in order."""
    results: list[AddResult] = [AddResult.STALE] * len(arrivals)
    taken = await _take_deliveries(connection, arrivals, dedupe_ttl)
    rounds: list[list[int]] = []
    seen: dict[tuple[int, str], int] = {}
    for index, arrival in enumerate(arrivals):
        if arrival.delivery_id and index not in taken:
            results[index] = AddResult.DUPLICATE
            continue
        key = (arrival.integration_id, arrival.order.order_id)
        depth = seen.get(key, 0)
        seen[key] = depth + 1
        if depth == len(rounds):
            rounds.append([])
        rounds[depth].append(index)
    # Round 1 holds every key of the group, so the row locks are all taken there; in key order,
    # as every replica takes them, two groups can never wait for each other in a circle.
    for members in rounds:
        members.sort(key=lambda i: (arrivals[i].integration_id, arrivals[i].order.order_id))
    for members in rounds:
        batch = [arrivals[i] for i in members]
        rows = await connection.fetch(_ACCEPT, *_version_columns(batch))
        kept = {(row["integration_id"], row["order_id"]): row for row in rows}
        for i in members:
            row = kept.get((arrivals[i].integration_id, arrivals[i].order.order_id))
            if row is not None:  # a new row was not replacing anything: replaced_pending is false
                results[i] = AddResult.COALESCED if row["replaced_pending"] else AddResult.BUFFERED
    accepted = sum(result is AddResult.BUFFERED or result is AddResult.COALESCED for result in results)
    superseded = sum(result is AddResult.COALESCED for result in results)
    await count(connection, accepted=accepted, superseded=superseded)
    changed = sorted(
        {
            a.integration_id
            for a, r in zip(arrivals, results, strict=True)
            if r in (AddResult.BUFFERED, AddResult.COALESCED)
        }
    )
    if changed:  # delivered when the transaction commits, never if it rolls back
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, ",".join(map(str, changed)))
    return results


async def _take_deliveries(connection: Connection, arrivals: Sequence[Arrival], ttl: float) -> set[int]:
    """Remember the arrivals' delivery ids for `ttl` from receipt; returns the indexes of the
    arrivals that took theirs — new, or expired by their receipt. Another arrival with the same
    id (a retry, in this group or already in the table) did not. Keys in sorted order: the rows
    are locked in one order by every replica."""
    first: dict[str, int] = {}
    for index, arrival in enumerate(arrivals):
        if arrival.delivery_id:
            first.setdefault(f"{arrival.integration_id}:{arrival.delivery_id}", index)
    if not first:
        return set()
    keys = sorted(first)
    rows = await connection.fetch(
        "INSERT INTO deliveries AS d (key, expires_at) SELECT * FROM unnest($1::text[], $2::float8[]) "
        "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
        "WHERE d.expires_at <= excluded.expires_at - $3::float8 RETURNING key",
        keys,
        [arrivals[first[key]].received_at + ttl for key in keys],
        ttl,
    )
    return {first[row["key"]] for row in rows}


async def remember_deliveries(connection: Connection, expiries: dict[str, float]) -> None:
    """Delivery ids of webhooks that did not reach `accept` (an ignored topic, a dead letter)."""
    keys = sorted(expiries)
    await connection.execute(
        "INSERT INTO deliveries AS d (key, expires_at) SELECT * FROM unnest($1::text[], $2::float8[]) "
        "ON CONFLICT (key) DO UPDATE SET expires_at = greatest(d.expires_at, excluded.expires_at)",
        keys,
        [expiries[key] for key in keys],
    )


#: the channel `accept` notifies with the integration ids that got a version: the leader's
#: lanes wake on it (and poll too: a notification can be missed while reconnecting)
CHANNEL = "order_bridge_lanes"


class LaneCounts(NamedTuple):
    pending: int
    in_flight: int
    #: receipt time of the oldest unsettled version (wall-clock POSIX seconds)
    oldest_received: float


async def lane_snapshot(connection: Connection) -> dict[int, LaneCounts]:
    """Every lane with anything unsettled, counted through the two partial indexes (sent orders,
    the bulk of the table, are not read)."""
    rows = await connection.fetch(
        """
        SELECT integration_id, sum(p)::bigint AS pending, sum(f)::bigint AS in_flight, min(r) AS oldest
        FROM (
            SELECT integration_id, 1 AS p, 0 AS f, p_received_at AS r FROM orders WHERE p_seq IS NOT NULL
            UNION ALL
            SELECT integration_id, 0, 1, f_received_at FROM orders WHERE f_seq IS NOT NULL
        ) AS unsettled
        GROUP BY integration_id
        """
    )
    return {
        int(row["integration_id"]): LaneCounts(int(row["pending"]), int(row["in_flight"]), float(row["oldest"]))
        for row in rows
    }


#: the ledger's counters (`counters` holds their folded values)
COUNTERS = ("accepted", "sent", "superseded", "dead_lettered", "replayed", "discarded")


async def count(connection: Connection, **deltas: int) -> None:
    """Add to the ledger's counters: a delta row each, so replicas counting at once never wait
    for each other on one hot row (`fold_counts` folds them in now and then)."""
    names = [name for name in sorted(deltas) if deltas[name]]
    if names:
        await connection.execute(
            "INSERT INTO counter_deltas (name, value) SELECT * FROM unnest($1::text[], $2::bigint[])",
            names,
            [deltas[name] for name in names],
        )


async def fold_counts(connection: Connection) -> None:
    """Fold the delta rows into `counters` in one statement: a reader sees either the rows or
    their sum, never both."""
    await connection.execute(
        """
        WITH moved AS (DELETE FROM counter_deltas RETURNING name, value),
             sums AS (SELECT name, sum(value)::bigint AS value FROM moved GROUP BY name)
        UPDATE counters AS c SET value = c.value + sums.value FROM sums WHERE c.name = sums.name
        """
    )


async def counter_values(connection: Connection) -> dict[str, int]:
    """The ledger's counters: their folded values plus the delta rows not folded yet."""
    rows = await connection.fetch(
        "SELECT c.name, c.value + coalesce((SELECT sum(d.value) FROM counter_deltas AS d "
        "WHERE d.name = c.name), 0) AS value FROM counters AS c"
    )
    return {row["name"]: int(row["value"]) for row in rows}


async def ledger_counts(connection: Connection) -> dict[str, int]:
    """The ledger's counters, and the unsettled versions (pending and in flight) counted through
    the two partial indexes (never the sent rows, the bulk of the table). Call it in a
    repeatable-read transaction for a consistent ledger."""
    counts = await counter_values(connection)
    counts["pending"] = int(
        await connection.fetchval(
            "SELECT (SELECT count(*) FROM orders WHERE p_seq IS NOT NULL) "
            "+ (SELECT count(*) FROM orders WHERE f_seq IS NOT NULL)"
        )
    )
    return counts


ENTRY_COLUMNS = (
    "order_id, platform, f_index, f_batch, f_attempt, f_seq, f_updated_at, f_digest, f_body, "
    "f_received_at, f_delivery_id"
)


def entries(integration_id: int, rows: Sequence[Any]) -> tuple[Entry, ...]:
    """A batch's entries from its rows' `ENTRY_COLUMNS`, in batch order."""
    ordered = sorted(rows, key=lambda row: row["f_index"])
    return tuple(entry(integration_id, row, "f") for row in ordered)


def entry(integration_id: int, row: Any, version: str) -> Entry:
    """The `Entry` of a row's pending (`version="p"`) or in-flight (`"f"`) version."""
    return Entry(
        integration_id,
        row["platform"],
        EncodedOrder(row["order_id"], bytes(row[f"{version}_body"])),
        row[f"{version}_updated_at"],
        row[f"{version}_seq"],
        row[f"{version}_received_at"],
        bytes(row[f"{version}_digest"]),
        row[f"{version}_delivery_id"],
    )


async def _lock(connection: Connection, integration_id: int, order_ids: Sequence[str]) -> None:
    """Lock the orders' rows in key order, as `accept` does: the leader and the acceptors
    never wait for each other in a circle. Byte order (`COLLATE "C"`), which is Python's order
    of the same UTF-8 strings, whatever the database's collation."""
    await connection.execute(
        "SELECT 1 FROM orders WHERE integration_id = $1 AND order_id = ANY($2::text[]) "
        'ORDER BY order_id COLLATE "C" FOR UPDATE',
        integration_id,
        sorted(order_ids),
    )


async def lane_lock(connection: Connection, integration_id: int) -> None:
    """One `take` or `settle` of a lane at a time, whoever calls (a flush racing a timer, two
    leaders of different accounts during a config change): a transaction-level advisory lock."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended('lane:' || $1::bigint, 0))", integration_id)


async def take(
    connection: Connection, lease: Lease, integration_id: int, limit: int, *, batch_id: str, attempt: int, now: float
) -> Batch | None:
    """The leader's: up to `limit` pending versions of a lane, first in line first, now in flight
    as one batch — or the batch already in flight, to be resent (at most one per lane). None when
    nothing is pending. `LostLease` (and nothing changed) when the lease is no longer this one."""
    async with connection.transaction():
        await fence(connection, lease, now=now)
        await lane_lock(connection, integration_id)
        flying = await connection.fetch(
            f"SELECT {ENTRY_COLUMNS} FROM orders WHERE integration_id = $1 AND f_seq IS NOT NULL", integration_id
        )
        if flying:
            return Batch(flying[0]["f_batch"], integration_id, entries(integration_id, flying), flying[0]["f_attempt"])
        chosen = [
            row["order_id"]
            for row in await connection.fetch(
                "SELECT order_id FROM orders WHERE integration_id = $1 AND p_seq IS NOT NULL "
                "ORDER BY p_position LIMIT $2",
                integration_id,
                limit,
            )
        ]
        if not chosen:
            return None
        await _lock(connection, integration_id, chosen)
        moved = await connection.fetch(
            f"""
            UPDATE orders AS o SET
                f_batch = $3, f_attempt = $4, f_index = t.idx, f_generation = $5,
                f_seq = p_seq, f_updated_at = p_updated_at, f_digest = p_digest, f_body = p_body,
                f_received_at = p_received_at, f_delivery_id = p_delivery_id,
                p_seq = NULL, p_updated_at = NULL, p_digest = NULL, p_body = NULL,
                p_received_at = NULL, p_delivery_id = NULL, p_position = NULL
            FROM unnest($2::text[]) WITH ORDINALITY AS t(order_id, idx)
            WHERE o.integration_id = $1 AND o.order_id = t.order_id AND o.p_seq IS NOT NULL AND o.f_seq IS NULL
            RETURNING {", ".join("o." + column.strip() for column in ENTRY_COLUMNS.split(","))}
            """,
            integration_id,
            chosen,
            batch_id,
            attempt,
            lease.generation,
        )
    return Batch(batch_id, integration_id, entries(integration_id, moved), attempt)


async def insert_dead_letter(connection: Connection, letter: DeadLetter) -> int:
    """Keep a dead letter (with the order as sent and the webhook body, when it has them);
    returns its id."""
    order = letter.order
    return int(
        await connection.fetchval(
            "INSERT INTO dead_letters (integration_id, platform, order_id, order_number, reason, "
            "detail, pointer, delivery_id, body, webhook, at, batch_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            *(letter.integration_id, letter.platform, letter.order_id, letter.order_number),
            *(letter.reason, letter.detail, letter.pointer, letter.delivery_id),
            order.json if order is not None else None,
            *(letter.webhook, letter.at, letter.batch_id),
        )
    )


async def taken_by(connection: Connection, integration_id: int) -> int | None:
    """The lease generation under which the lane's batch in flight was taken (None: none in
    flight). A new leader that finds a batch of an older generation holds it back for the
    Sendcloud client's timeout before resending (DESIGN §5's recovery hold): the old leader's
    request may still be on its way."""
    generation = await connection.fetchval(
        "SELECT f_generation FROM orders WHERE integration_id = $1 AND f_seq IS NOT NULL LIMIT 1", integration_id
    )
    return None if generation is None else int(generation)


async def settle(connection: Connection, lease: Lease, batch: Batch, settlement: Settlement, *, now: float) -> Settled:
    """The leader's: apply Sendcloud's answer to the batch in flight — sent versions are
    remembered (against stale ones), refused ones become dead letters, retried ones go back in
    front of the line unless a newer version is pending (which then goes instead, with the older
    receipt time) — and count the ledger, in one fenced transaction."""
    integration_id = batch.integration_id
    sent = [entry.order_id for entry in settlement.sent]
    dead = [entry.order_id for entry in settlement.dead_entries]
    retried = [entry.order_id for entry in settlement.retry]
    async with connection.transaction():
        await fence(connection, lease, now=now)
        await lane_lock(connection, integration_id)
        await _lock(connection, integration_id, [entry.order_id for entry in batch.entries])
        flying = await connection.fetchval(
            "SELECT count(*) FROM orders WHERE integration_id = $1 AND f_batch = $2", integration_id, batch.id
        )
        if flying != len(batch.entries) or sorted(sent + dead + retried) != sorted(e.order_id for e in batch.entries):
            raise RuntimeError(f"batch {batch.id} is not in flight on lane {integration_id}, or not settled whole")
        clear = (
            "f_batch = NULL, f_generation = NULL, f_attempt = NULL, f_index = NULL, f_seq = NULL, "
            "f_updated_at = NULL, f_digest = NULL, "
            "f_body = NULL, f_received_at = NULL, f_delivery_id = NULL"
        )
        await connection.execute(
            f"UPDATE orders SET s_seq = f_seq, s_updated_at = f_updated_at, s_digest = f_digest, {clear} "
            "WHERE integration_id = $1 AND order_id = ANY($2::text[]) AND f_batch = $3",
            integration_id,
            sent,
            batch.id,
        )
        await connection.execute(
            f"UPDATE orders SET {clear} WHERE integration_id = $1 AND order_id = ANY($2::text[]) AND f_batch = $3",
            integration_id,
            dead,
            batch.id,
        )
        kept = [await insert_dead_letter(connection, letter) for letter in settlement.dead]
        superseded = 0
        if retried:
            front = await connection.fetchval(
                "SELECT coalesce(min(p_position), 0) FROM orders WHERE integration_id = $1 AND p_seq IS NOT NULL",
                integration_id,
            )
            # back in front of the line, in batch order; where a newer version is pending
            # meanwhile, that one goes instead, with the older one's receipt time (superseded)
            p = ("seq", "updated_at", "digest", "body", "delivery_id")
            keep_newer = ", ".join(f"p_{c} = CASE WHEN o.p_seq IS NULL THEN o.f_{c} ELSE o.p_{c} END" for c in p)
            placed = await connection.fetch(
                f"UPDATE orders AS o SET {keep_newer}, "
                "p_received_at = CASE WHEN o.p_seq IS NULL THEN o.f_received_at "
                "ELSE least(o.p_received_at, o.f_received_at) END, "
                "p_position = $3::float8 - $4::float8 + t.place, replaced_pending = o.p_seq IS NOT NULL, "
                f"{clear} "
                "FROM unnest($2::text[]) WITH ORDINALITY AS t(order_id, place) "
                "WHERE o.integration_id = $1 AND o.order_id = t.order_id AND o.f_batch = $5 "
                "RETURNING o.replaced_pending",
                integration_id,
                retried,
                front,
                len(retried) + 1,
                batch.id,
            )
            superseded = sum(bool(row["replaced_pending"]) for row in placed)
        await count(connection, sent=len(sent), dead_lettered=len(dead), superseded=superseded)
    letters = tuple(replace(letter, id=int(letter_id)) for letter, letter_id in zip(settlement.dead, kept, strict=True))
    return Settled(superseded, (), letters)


async def forget_sent(connection: Connection, keep: int) -> int:
    """Delete the rows of orders with nothing pending or in flight beyond the newest `keep` sent
    of each lane (by their arrival numbers): the table does not grow with every order ever sent.
    A stale repeat of a forgotten order is then taken as new, as with the other stores'
    `remember_sent`. Each row is checked again as it is deleted (a version arriving meanwhile
    keeps it). Returns the number of rows deleted."""
    status = await connection.execute(
        """
        DELETE FROM orders o
        USING (
            SELECT integration_id, order_id FROM (
                SELECT integration_id, order_id,
                       row_number() OVER (PARTITION BY integration_id ORDER BY s_seq DESC) AS newer
                FROM orders WHERE p_seq IS NULL AND f_seq IS NULL
            ) ranked
            WHERE newer > $1
        ) old
        WHERE o.integration_id = old.integration_id AND o.order_id = old.order_id
          AND o.p_seq IS NULL AND o.f_seq IS NULL
        """,
        keep,
    )
    return int(status.rsplit(" ", 1)[1])

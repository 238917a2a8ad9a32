#!/usr/bin/env python3
"""What SQLite itself costs per order, with no Python service around it: the floor under the
SQLite store's ingest figure.

One order's life as the store writes it — inserted with its delivery id (groups of 40, as
concurrent webhooks commit together), taken into a batch of 100, deleted once sent and its
version remembered — done with the standard library's `sqlite3` alone, for 20,000 orders with a
1.7 kB body, on two layouts:

- schema 1 (the first SQLite store): `pending` and `in_flight` keyed by (integration, order id);
  a batch copies each body from one table to the other;
- schema 2 (today's, created by the store's own migrations): `versions` keyed by the arrival
  number (rows append at the end), a batch is a list of numbers in `batch_versions`.

each with `synchronous = FULL` and `OFF` (what the fsyncs cost). Prints CPU µs (user + system,
all threads) and wall µs per order. Pin it to one CPU to compare with the ingest bench:

    taskset -c 0 .venv/bin/python bench/sqlite_floor.py
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from service.store import sqlite as store_sqlite

N = 20_000
GROUP = 40
BATCH = 100
BODY = os.urandom(700) + b"x" * 1000
_rng = random.Random(1)
ORDERS = [(k % 10, str(_rng.randrange(10**12, 10**13))) for k in range(N)]
_V1_COLUMNS = "platform, updated_at, seq, received_at, digest, delivery_id, body, compressed"


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    return connection


def schema_1(path: Path, synchronous: str) -> None:
    connection = _connect(path, synchronous)
    connection.execute("BEGIN")
    store_sqlite._run_script(connection, store_sqlite._MIGRATIONS[0])
    connection.execute("COMMIT")
    connection.execute("CREATE TABLE deliveries (key TEXT, expires_at REAL)")
    lanes: dict[int, list[str]] = {i: [] for i in range(10)}
    for start in range(0, N, GROUP):
        connection.execute("BEGIN IMMEDIATE")
        rows = []
        for k in range(start, start + GROUP):
            lane, order_id = ORDERS[k]
            lanes[lane].append(order_id)
            rows.append((lane, order_id, float(k), "shopify", 1.0, k, 2.0, os.urandom(16), f"d{k}", BODY, 0))
        connection.executemany("INSERT INTO pending VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        connection.executemany(
            "INSERT INTO deliveries VALUES (?, 1.0)", [(f"7:d{k}",) for k in range(start, start + GROUP)]
        )
        connection.execute("COMMIT")
        for lane, ids in lanes.items():
            if len(ids) < BATCH:
                continue
            batch, lanes[lane] = ids[:BATCH], ids[BATCH:]
            connection.execute("BEGIN IMMEDIATE")
            for idx, order_id in enumerate(batch):
                connection.execute(
                    f"INSERT INTO in_flight SELECT integration_id, order_id, 'b', 1, ?, {_V1_COLUMNS} FROM pending "
                    "WHERE integration_id = ? AND order_id = ?",
                    (idx, lane, order_id),
                )
                connection.execute("DELETE FROM pending WHERE integration_id = ? AND order_id = ?", (lane, order_id))
            connection.execute("SELECT order_id, body FROM in_flight WHERE integration_id = ?", (lane,)).fetchall()
            connection.execute("COMMIT")
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("DELETE FROM in_flight WHERE integration_id = ?", (lane,))
            _remember_sent(connection, lane, batch)
            connection.execute("COMMIT")
    connection.close()


def schema_2(path: Path, synchronous: str) -> None:
    connection = _connect(path, synchronous)
    store_sqlite._migrate(connection, path)
    lanes: dict[int, list[int]] = {i: [] for i in range(10)}
    for start in range(0, N, GROUP):
        connection.execute("BEGIN IMMEDIATE")
        rows = []
        for k in range(start, start + GROUP):
            lane, order_id = ORDERS[k]
            lanes[lane].append(k)
            rows.append((k, lane, order_id, float(k), "shopify", 1.0, 2.0, os.urandom(16), f"d{k}", BODY, 0))
        connection.executemany(store_sqlite._INSERT_VERSION, rows)
        connection.executemany(store_sqlite._INSERT_DELIVERY, [(f"7:d{k}", 1.0) for k in range(start, start + GROUP)])
        connection.execute("COMMIT")
        for lane, seqs in lanes.items():
            if len(seqs) < BATCH:
                continue
            batch, lanes[lane] = seqs[:BATCH], seqs[BATCH:]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO batch_versions VALUES (?, ?, 'b', 1, ?)", [(seq, lane, i) for i, seq in enumerate(batch)]
            )
            connection.execute(
                "SELECT v.seq, v.body FROM batch_versions b JOIN versions v USING (seq) WHERE b.integration_id = ?",
                (lane,),
            ).fetchall()
            connection.execute("COMMIT")
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(store_sqlite._DELETE_VERSION, [(seq,) for seq in batch])
            connection.execute(store_sqlite._END_BATCH, (lane,))
            _remember_sent(connection, lane, [ORDERS[seq][1] for seq in batch])
            connection.execute("COMMIT")
    connection.close()


def _remember_sent(connection: sqlite3.Connection, lane: int, order_ids: list[str]) -> None:
    connection.executemany(
        "INSERT INTO sent VALUES (?, ?, 1.0, 1, x'00', 1) ON CONFLICT DO UPDATE SET sent_seq = excluded.sent_seq",
        [(lane, order_id) for order_id in order_ids],
    )


def main() -> None:
    print(f"{N:,} orders, {len(BODY)} B bodies, commits of {GROUP}, batches of {BATCH}")
    with tempfile.TemporaryDirectory() as folder:
        for synchronous in ("FULL", "OFF"):
            for layout in (schema_1, schema_2):
                path = Path(folder) / f"{layout.__name__}-{synchronous}.db"
                cpu, wall = time.process_time(), time.perf_counter()
                layout(path, synchronous)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"{layout.__name__}, synchronous = {synchronous}: {cpu / N * 1e6:.1f} µs CPU per order, "
                    f"{wall / N * 1e6:.1f} µs wall"
                )


if __name__ == "__main__":
    main()

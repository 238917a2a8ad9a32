"""The stores that buffer-semantics tests run against: every test taking `new_store` runs on the
memory store, on a SQLite file in the test's temporary folder and on a fresh database of the
test session's PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.store import Store, StoreSettings
from service.store.memory import MemoryStore
from service.store.postgres.store import PostgresStore
from service.store.sqlite import SqliteStore

__all__ = ["KINDS", "StoreFactory", "new_store", "open_store"]

KINDS = ("memory", "sqlite", "postgres")
StoreFactory = Callable[..., Awaitable[Any]]


async def open_store(kind: str, path: Path, dsn: str = "", **options: Any) -> Store:
    """A store of `kind` (a PostgreSQL one on the database `dsn`); `options` are `StoreSettings` fields."""
    settings = StoreSettings(**options)
    if kind == "memory":
        return MemoryStore(settings)
    if kind == "postgres":
        store = PostgresStore(dsn, account="test-account", settings=settings)
        await store.connect()
        await store.recover()  # as `Buffer.start` does: the flusher recovers before it takes
        return store
    return SqliteStore.open(path, synchronous="normal", settings=settings)


@pytest.fixture(params=KINDS)
async def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """`await new_store(**options)`: a fresh store of this run's kind (closed after the test)."""
    opened: list[Store] = []
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""

    async def factory(**options: Any) -> Any:
        store = await open_store(request.param, tmp_path / f"store-{len(opened)}.db", dsn, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()

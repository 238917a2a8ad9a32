"""The stores that buffer-semantics tests run against: every test taking `new_store` runs once
on the memory store and once on a SQLite file in the test's temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.store import Store, StoreSettings
from service.store.memory import MemoryStore
from service.store.sqlite import SqliteStore

__all__ = ["KINDS", "StoreFactory", "new_store", "open_store"]

KINDS = ("memory", "sqlite")
StoreFactory = Callable[..., Awaitable[Any]]


async def open_store(kind: str, path: Path, **options: Any) -> MemoryStore | SqliteStore:
    """A store of `kind`; `options` are `StoreSettings` fields."""
    settings = StoreSettings(**options)
    if kind == "memory":
        return MemoryStore(settings)
    return SqliteStore.open(path, synchronous="normal", settings=settings)


@pytest.fixture(params=KINDS)
async def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """`await new_store(**options)`: a fresh store of this run's kind (closed after the test)."""
    opened: list[Store] = []

    async def factory(**options: Any) -> MemoryStore | SqliteStore:
        store = await open_store(request.param, tmp_path / f"store-{len(opened)}.db", **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()

"""The store a `[store] url` names: `memory://` or `sqlite:///path` (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.store import Store
from service.store.memory import MemoryStore
from service.store.sqlite import SqliteStore

__all__ = ["MEMORY", "open_store", "sqlite_path"]

MEMORY = "memory://"
_SQLITE = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL; None for any other URL."""
    if not url.startswith(_SQLITE) or len(url) == len(_SQLITE):
        return None
    return Path(url[len(_SQLITE) :])


def open_store(
    url: str,
    *,
    synchronous: str = "full",
    remember_sent: int = 100_000,
    compress_above: int = 10_000,
    dead_letter_capacity: int = 10_000,
    dead_letter_retention: float = 30 * 86_400.0,
    dedupe_ttl: float = 86_400.0,
    dedupe_max_entries: int = 200_000,
) -> Store:
    """Open the store at `url` (a SQLite file is created, migrated and read back). Raises
    `StoreOpenError` when the file cannot be used, `ValueError` for a URL of no known kind."""
    options: dict[str, Any] = {
        "remember_sent": remember_sent,
        "compress_above": compress_above,
        "dead_letter_capacity": dead_letter_capacity,
        "dead_letter_retention": dead_letter_retention,
        "dedupe_ttl": dedupe_ttl,
        "dedupe_max_entries": dedupe_max_entries,
    }
    if url == MEMORY:
        return MemoryStore(**options)
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"no store for {url!r}: use {MEMORY} or {_SQLITE}path")
    return SqliteStore.open(path, synchronous=synchronous, **options)

"""The store a `[store] url` names: `memory://` or `sqlite:///path` (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path

from service.store import DEFAULT_SETTINGS, Store, StoreSettings
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
    settings: StoreSettings = DEFAULT_SETTINGS,
) -> Store:
    """Open the store at `url` (a SQLite file is created, migrated and read back). Raises
    `StoreOpenError` when the file cannot be used, `ValueError` for a URL of no known kind."""
    if url == MEMORY:
        return MemoryStore(settings)
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"no store for {url!r}: use {MEMORY} or {_SQLITE}path")
    return SqliteStore.open(path, synchronous=synchronous, settings=settings)

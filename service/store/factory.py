"""The store a `[store] url` names: `memory://`, `sqlite:///path` or `postgresql://…` (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path

from service.store import DEFAULT_SETTINGS, Store, StoreSettings
from service.store.memory import MemoryStore
from service.store.postgres.store import PostgresStore
from service.store.sqlite import SqliteStore

__all__ = ["MEMORY", "is_postgres", "open_store", "sqlite_path"]

MEMORY = "memory://"
_SQLITE = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL; None for any other URL."""
    if not url.startswith(_SQLITE) or len(url) == len(_SQLITE):
        return None
    return Path(url[len(_SQLITE) :])


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(
    url: str,
    *,
    synchronous: str = "full",
    settings: StoreSettings = DEFAULT_SETTINGS,
    account: str = "",
    password_file: str | None = None,
) -> Store:
    """Open the store at `url` (a SQLite file is created, migrated and read back; a PostgreSQL
    store connects in `Store.connect`, flushing for the Sendcloud `account` — `lease.account_key`
    of its public key — while it holds that account's lease). Raises `StoreOpenError` when the
    file cannot be used, `ValueError` for a URL of no known kind."""
    if url == MEMORY:
        return MemoryStore(settings)
    if is_postgres(url):
        secret = Path(password_file) if password_file is not None else None
        return PostgresStore(url, account=account, settings=settings, password_file=secret)
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"no store for that URL: use {MEMORY}, {_SQLITE}path or postgresql://…")
    return SqliteStore.open(path, synchronous=synchronous, settings=settings)

"""The PostgreSQL store (`[store] url = "postgresql://…"`): one database shared by every replica.

- `schema`: the tables and their migrations, recorded in the database;
- `sql`: the statements on orders — `accept` (any replica), `take` and `settle` (the flusher's,
  fenced by its lease);
- `store`: `PostgresStore`, the `service.store.Store` around them.
"""

from service.store.postgres.schema import MIGRATIONS, migrate
from service.store.postgres.sql import CHANNEL, LaneCounts, accept, lane_snapshot, ledger_counts, settle, take, taken_by

__all__ = [
    "CHANNEL",
    "MIGRATIONS",
    "LaneCounts",
    "accept",
    "lane_snapshot",
    "ledger_counts",
    "migrate",
    "settle",
    "take",
    "taken_by",
]

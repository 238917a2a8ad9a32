"""Helpers for tests that run the service as several processes (replicas on PostgreSQL,
`serve --workers`): a config against a fake Sendcloud, signed deliveries, a round-robin load of
out-of-order updates, and the children of a supervisor with the CPU each used."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx

from service.fake_sendcloud import FakeSendcloud
from tests.conftest import SECRETS, fake_sendcloud_and_config
from tests.helpers import SHOPIFY_SAMPLE, shopify_headers

__all__ = [
    "BASE_TIME",
    "ORDERS",
    "RoundRobinLoad",
    "children_of",
    "cpu_ticks",
    "deliver",
    "fake_and_config",
    "minute_of",
]

SHOPIFY = SHOPIFY_SAMPLE


def fake_and_config(
    serve: Any, tmp_path: Path, store: dict[str, object], **sections: dict[str, object]
) -> tuple[FakeSendcloud, Path]:
    """`fake_sendcloud_and_config` with INFO logs (the lease's events), a short debounce and `store`."""
    tables: dict[str, dict[str, object]] = {
        "logging": {"level": "INFO"},
        "buffer": {"debounce_seconds": 0.2, "max_wait_seconds": 1.0},
        **sections,
    }
    fake, config = fake_sendcloud_and_config(serve, tmp_path, store=store, **tables)
    return cast(FakeSendcloud, fake), cast(Path, config)


def deliver(url: str, order_id: int, **changes: Any) -> httpx.Response:
    body = json.dumps({**SHOPIFY, "id": order_id, **changes}).encode()
    return httpx.post(
        url + "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRETS["shopify"], body), timeout=10
    )


BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)
ORDERS = 40


class RoundRobinLoad:
    """Signed updates of `ORDERS` orders, each version a minute of `updated_at` (mostly newer,
    sometimes older: out of order), posted in turn to every replica in `urls` — a dead one's
    connection fails and the next takes the request — from a thread of its own until `stop()`.
    `accepted` keeps each order's newest version answered `accepted`; `unanswered` the versions
    whose request got no answer (a replica killed mid-request may have committed one)."""

    def __init__(self, urls: list[str], seed: int) -> None:
        self.urls = urls
        self.rng = random.Random(seed)
        self.accepted: dict[str, int] = {}
        self.unanswered: dict[str, set[int]] = {}
        self.answers: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> RoundRobinLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        newest: dict[int, int] = {}
        turn = 0
        async with httpx.AsyncClient(timeout=5) as client:
            while not self._stopping.is_set():
                order_id = 600_000 + self.rng.randrange(ORDERS)
                minute = max(0, newest.get(order_id, 0) + self.rng.randint(-2, 3))
                newest[order_id] = max(minute, newest.get(order_id, 0))
                stamp = (BASE_TIME + timedelta(minutes=minute)).isoformat()
                body = json.dumps({**SHOPIFY, "id": order_id, "updated_at": stamp}).encode()
                headers = shopify_headers(SECRETS["shopify"], body, topic="orders/updated")
                url = self.urls[turn % len(self.urls)]
                turn += 1
                try:
                    answer = await client.post(url + "/webhooks/shopify/7", content=body, headers=headers)
                except httpx.HTTPError:
                    self.answers["no answer"] += 1
                    self.unanswered.setdefault(str(order_id), set()).add(minute)
                    continue
                status = answer.json().get("status", answer.json().get("error", "?"))
                self.answers[f"{status}:{answer.status_code}"] += 1
                if status == "accepted":
                    self.accepted[str(order_id)] = max(self.accepted.get(str(order_id), -1), minute)
                await asyncio.sleep(0.005)


def minute_of(stored: Any) -> int | None:
    if stored is None:
        return None
    updated = datetime.fromisoformat(stored.order["order_details"]["order_updated_at"])
    return int((updated - BASE_TIME) / timedelta(minutes=1))


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

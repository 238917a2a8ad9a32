"""`Recent`, the bounded map behind dedupe and the sent-version memory."""

from __future__ import annotations

import gc

import pytest

from service.dedupe import SeenDeliveries
from service.recent import Recent
from service.store import StoreSettings, digest
from service.store.memory import MemoryStore


def test_holds_at_most_capacity_and_always_the_newest_half() -> None:
    recent: Recent[int] = Recent(1000)
    for n in range(10_000):
        recent.put(f"k{n}", n)
        assert len(recent) <= 1000
        newest = range(max(0, n - 499), n + 1)
        assert all(recent.get(f"k{m}") == m for m in newest[:: max(1, len(newest) // 10)])
    assert recent.get("k0") is None
    assert recent.get("k9999") == 9999


def test_a_key_put_again_keeps_its_newest_value_and_counts_once() -> None:
    recent: Recent[int] = Recent(4)
    recent.put("a", 1)  # rotates at once (half = 2 after the second key)
    recent.put("b", 2)
    recent.put("a", 3)
    assert recent.get("a") == 3
    assert len(recent) == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Recent(0)


def test_what_the_service_remembers_in_bulk_is_not_tracked_by_the_garbage_collector() -> None:
    """Dedupe ids and sent versions: a full collection must not walk them (docs/benchmarks.md)."""
    seen = SeenDeliveries(60, 10_000)
    for n in range(3000):
        seen.remember(SeenDeliveries.key(7, f"delivery-{n}"), 1_700_000_000.0)
    store = MemoryStore(StoreSettings(remember_sent=10_000))
    sent = store._lane(7).sent
    sent.put("1001", (1_700_000_000.0, 1, digest(b"{}")))
    gc.collect()
    assert not gc.is_tracked(seen._expiry._new) and not gc.is_tracked(seen._expiry._old)
    assert not gc.is_tracked(sent._new) and not gc.is_tracked(sent._old)


def test_seen_deliveries_expire_after_their_ttl() -> None:
    seen = SeenDeliveries(10, 100)
    key = SeenDeliveries.key(3, "abc")
    assert seen.remember(key, 100.0) == 110.0
    assert seen.seen(key, 109.9) and not seen.seen(SeenDeliveries.key(4, "abc"), 100.0)
    assert not seen.seen(key, 110.5)
    seen.restore(key, 200.0)  # as read back from the store
    assert seen.seen(key, 199.0)
